# dait tasks. Recipes call scripts in scripts/; CI calls the same recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Install everything the tests need (idempotent).
setup:
    scripts/install-tools.sh

# The test suite CI runs.
test: setup
    cargo test --workspace --locked
