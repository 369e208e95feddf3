//go:build race

package main

// raceEnabled is set when the tests run under the race detector, which
// slows the converter down about tenfold.
const raceEnabled = true
