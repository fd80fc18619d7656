# The two commands of the README, and the checks the test command runs.
.PHONY: demo portal test setup lint deb

demo: ## Start a server on the embedded default and create a desktop.
	scripts/demo.sh

portal: ## The web portal with a test AD domain: open the printed URL, sign in as alice.
	scripts/demo.sh --web

test: ## Everything CI runs: setup, formatting, lints, all tests.
	scripts/test.sh

setup: ## Install what a fresh machine lacks (Ansible venv).
	scripts/setup.sh

deb: ## Debian packages (daas-server, daas-cli, daas-agent) of release binaries, in target/debian.
	deploy/debian/build.sh --build --profile release --out target/debian
