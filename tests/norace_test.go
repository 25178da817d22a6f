//go:build !race

package tests

// raceDetector is false without -race (see race_test.go).
const raceDetector = false
