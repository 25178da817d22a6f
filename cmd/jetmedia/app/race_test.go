//go:build race

package app_test

// raceDetector is true in a -race build (see norace_test.go).
const raceDetector = true
