# basefs — the two commands are `make run` (the whole job end to end) and `make test`.
GO      ?= go
BIN     := bin
# An exec count, not a duration: with a duration the fuzzing engine can fail with "context
# deadline exceeded" when its workers stop late on a loaded machine (seen twice in CI).
FUZZTIME ?= 200000x
# Pure-Go DNS and user lookups: the daemon's threads are then the Go runtime's own, not the C
# library's with 8 MiB stacks, which the serving process would lock in memory (mlockall).
export GOFLAGS += -tags=netgo,osusergo

.PHONY: all build run test setup vet fmt-check fuzz clean bench deb

all: build

build:
	mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

setup:
	./scripts/setup-host.sh
	./scripts/setup-packaging.sh

# make deb: the Debian package (scripts/build-deb.sh: version from git unless VERSION=…) in
# $(DEB_OUT), checked by lintian (no error or warning).
DEB_OUT ?= $(BIN)
deb:
	./scripts/setup-packaging.sh
	deb=$$(./scripts/build-deb.sh $(DEB_OUT) $(VERSION)) && echo "$$deb" && lintian --fail-on error,warning "$$deb"

# make run: set up the host, build, and run the main job on the embedded default.
run: setup build
	./scripts/run-demo.sh

# make run-openstack: an all-in-one OpenStack on 127.0.0.1 (scripts/start-openstack.sh) and the
# test guest booted by nova from Glance, its console shown, deleted, booted again.
.PHONY: run-openstack
run-openstack: setup build
	./scripts/run-openstack.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every parser of outside input, briefly; each target's corpus is kept in its testdata/.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./chunkstore/
	$(GO) test -run '^$$' -fuzz '^FuzzParseName$$' -fuzztime $(FUZZTIME) ./fs/
	$(GO) test -run '^$$' -fuzz '^FuzzParseProfile$$' -fuzztime $(FUZZTIME) ./cache/
	$(GO) test -run '^$$' -fuzz '^FuzzNew$$' -fuzztime $(FUZZTIME) ./chunkstore/httpstore/
	$(GO) test -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzValidateID$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzParseURL$$' -fuzztime $(FUZZTIME) ./chunkstore/s3/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRef$$' -fuzztime $(FUZZTIME) ./chunkstore/glance/glanceref/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./chunkstore/inspect/

# make test: set up the host, then format, vet, every test (integration included) with -race,
# and a brief fuzz run of each parser.
test: setup build fmt-check vet
	$(GO) test -race -count=1 -timeout 60m ./...
	$(MAKE) --no-print-directory fuzz

# make bench: the quick benchmark pass (a few minutes here); BENCH_FLAGS= for the full one
# (~25 min). It writes results.json, report.md and plots to $(BENCH_OUT).
BENCH_OUT   ?= bench-out
BENCH_FLAGS ?= --quick
bench: setup build
	$(BIN)/basefs-bench $(BENCH_FLAGS) --out $(BENCH_OUT)

clean:
	rm -rf $(BIN) .cache bench-out
