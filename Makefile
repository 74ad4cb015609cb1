# flotilla's build and test entry points. `make test` is what CI runs.
GO       ?= go
FUZZTIME ?= 4s
LINT      = $(GO) tool -modfile=tools/go.mod golangci-lint

.PHONY: test check fmt-check vet unit fuzz lint build env-report pacts pacts-check

## test: gofmt check, go vet, the race-enabled test suite, and a short fuzz of every parser
test: env-report fmt-check vet unit fuzz

## check: test, plus golangci-lint
check: test lint

build:
	$(GO) build -o bin/flotilla ./cmd/flotilla

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path './tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The platform's end-to-end tests build and verify the whole shop: on a busy
# 2-core machine that outlasts go test's default 10-minute limit. The game
# day runs in a lane of its own beside the rest (scripts/unit.sh).
unit:
	@GO=$(GO) ./scripts/unit.sh

## fuzz: every Fuzz target in the module, FUZZTIME each
fuzz:
	@./scripts/fuzz-all.sh $(FUZZTIME)

lint:
	$(LINT) run ./...

## pacts: regenerate pacts/ from one complete run of the shop's consumer contract tests
pacts:
	$(GO) run ./scripts/pacts

## pacts-check: fail when pacts/ differs from what the consumer tests write (CI runs it)
pacts-check:
	$(GO) run ./scripts/pacts -check

# One visible line for each external-server suite that will be skipped:
# the variables come from the code (what some package reads), not a list.
env-report:
	@$(GO) run ./internal/testenv/envreport
