# The first hour (issue 29): what a newcomer meets first keeps telling the truth. Included by the
# Makefile. The e2e side is tests/tests/first_hour.rs (demos beside other Envoys, the README's
# Envoy commands side by side, `make report`'s exit) and tests/tests/readme_figures.rs (the
# README's figures against the code and a real Envoy), both in `make e2e`.

# `make help` lists every user-facing target.
test: help-check
