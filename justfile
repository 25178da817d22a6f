# jetmedia recipes. `just` comes from the npm package rust-just where apt has none.
# The README's two commands (run, test) work without just.

# Run a single node with the defaults (http://127.0.0.1:8080/).
run *ARGS:
    go run ./cmd/jetmedia serve {{ARGS}}

# Every test, as CI runs them minus the race detector.
test:
    go test ./...

# Every test under the race detector (what CI runs).
race:
    go test -race -count=1 ./...

# gofmt, go vet, staticcheck, and cyclomatic complexity (gocyclo): at most 15 in cmd/ (flag
# parsing and wiring), at most 25 anywhere else (test scenarios excepted).
lint:
    test -z "$(gofmt -l $(git ls-files '*.go'))"
    go vet ./...
    go tool staticcheck ./...
    go tool gocyclo -over 15 -ignore '_test.go$' cmd
    go tool gocyclo -over 25 -ignore '_test.go$' .

# Hot-path benchmarks, 10 runs each for benchstat (see docs/benchmarks.md).
bench:
    go test -run '^$' -bench . -benchmem -count 10 ./egress/forward ./pipeline/...  ./projections ./tests | tee bench.out

# Fuzz every parser for 30 s each.
fuzz:
    go test -run '^$' -fuzz FuzzDecode -fuzztime 30s ./events
    go test -run '^$' -fuzz FuzzReadOffer -fuzztime 30s ./pipeline/rtc
    go test -run '^$' -fuzz FuzzValidateEvent -fuzztime 30s ./schemas
    go test -run '^$' -fuzz FuzzCoreInput -fuzztime 30s ./ingress/signal
    go test -run '^$' -fuzz FuzzPacer -fuzztime 30s ./pipeline/pacer

# End-to-end tests only: real Chromium, two-server systems, restarts.
e2e:
    go test -race -count=1 -v ./tests/...

# A hub and a media-only leaf node on loopback (HTTP 8080 and 8081).
cluster:
    go run ./cmd/jetmedia dev-cluster
