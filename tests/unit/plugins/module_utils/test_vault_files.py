"""plaintext_vault_files: which vault files of an inventory are not encrypted."""

from ansible_collections.rehab.scale.plugins.module_utils.vault_files import plaintext_vault_files


def test_plaintext_vaults_are_found_and_encrypted_ones_are_not(tmp_path):
    inv = tmp_path / "prod"
    (inv / "group_vars/all").mkdir(parents=True)
    (inv / "group_vars/db/vault").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "group_vars/all/vault.yml").write_text("vault_rehab_db_password: hunter2hunter2\n")
    (inv / "group_vars/all/main.yml").write_text("rehab_db_name: rehab\n")  # not a vault file
    (inv / "group_vars/db/vault/secrets.yml").write_text("x: 1\n")
    (inv / "host_vars/pg1.yml").write_text("a: 1\n")
    encrypted = inv / "host_vars/vault.yml"
    encrypted.write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    assert plaintext_vault_files([str(inv), str(inv)]) == [
        str(inv / "group_vars/all/vault.yml"),
        str(inv / "group_vars/db/vault/secrets.yml"),
    ]


def test_missing_directories_are_fine(tmp_path):
    assert plaintext_vault_files([str(tmp_path / "nowhere"), ""]) == []
