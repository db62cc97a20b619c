"""A department's state in the home folder: knowledge bases, accounts and roles, the
conversations and the audit log (SQLite files under `Settings.home`)."""
