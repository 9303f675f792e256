// Package scenario defines meshkv's named chaos scenarios and runs them: it
// starts a fresh multi-process cluster (chaos/cluster), runs the workload
// (chaos/workload) while the scenario's faults play out, heals everything,
// reads back, and judges the run with the checkers of chaos/check.
//
// A scenario is a fault script over an [Env]: it finds the leader, cuts or
// heals links, kills, pauses or adds nodes, and marks each fault with
// [Env.Fault] so that the report can show how long the cluster went without a
// successful write during it and how long it took to recover after the heal.
//
// Each fault's span is also judged per member: the longest stretch without a
// successful write by the client pinned to that member, leaving out the time
// the member was cut off from every majority ([MemberGap]), and the median
// over faults of the worst member gap. Scenarios may carry a [Target] for
// these numbers.
//
// [Run] runs one scenario and returns a [Report]; [WriteTable] prints reports
// as a table and [WriteMarkdown] as a markdown table with a row per run. The package owns no goroutines beyond those of the cluster and
// the workload it starts, which Run stops before it returns.
package scenario
