//go:build race

package bootstrap

// raceEnabled: the race detector slows the single-goroutine simulations
// about tenfold and finds nothing in them, so they run fewer seeds.
const raceEnabled = true
