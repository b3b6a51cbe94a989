"""Pure builders of the command lines roadie runs; unit-tested without hosts."""
