from factory.cli import console_entry

console_entry()
