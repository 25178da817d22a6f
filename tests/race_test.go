//go:build race

package tests

// raceDetector is true in a -race build (see norace_test.go).
const raceDetector = true
