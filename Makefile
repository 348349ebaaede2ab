# The two commands of the README. Everything else is in infra/scripts/.
.PHONY: run test stack-up stack-down

## Bring up Kafka, Postgres, Redis and the object store, start `flk serve` and send a demo load.
run:
	bash infra/scripts/run-demo.sh

## Every gate CI runs (installs what it needs on a fresh machine).
test:
	bash infra/scripts/test-all.sh

stack-up:
	bash infra/scripts/stack.sh up

stack-down:
	bash infra/scripts/stack.sh down
