//go:build race

package cluster

// raceDetector is true in a -race build (see norace_test.go).
const raceDetector = true
