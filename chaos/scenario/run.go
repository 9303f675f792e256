package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/meshkv/meshkv/chaos/check"
	"github.com/meshkv/meshkv/chaos/cluster"
	"github.com/meshkv/meshkv/chaos/workload"
)

// Defaults of Options.
const (
	DefaultHold            = 4 * time.Second
	DefaultWarmup          = 1500 * time.Millisecond
	DefaultCooldown        = 1500 * time.Millisecond
	DefaultRecoveryTimeout = 20 * time.Second
	DefaultCheckTimeout    = 60 * time.Second
	DefaultStartTimeout    = 30 * time.Second
)

// ErrInvalidOptions is wrapped by every error Options.Validate returns.
var ErrInvalidOptions = errors.New("scenario: invalid options")

// Options configure a run. Zero values mean the documented defaults.
type Options struct {
	// Binary is the server binary: meshkv, or etcd for the etcd flavor
	// (required).
	Binary string
	// Flavor is the server software (zero: meshkv).
	Flavor cluster.Flavor
	// Net is the network mode (zero: proxy).
	Net cluster.Net
	// Starve, when "leader" or "follower", saturates the CPU of one member
	// for the whole fault script: the leader when the script starts, or a
	// follower drawn from the seed. StarveMethod says how (zero: quota).
	Starve       string
	StarveMethod cluster.StarveMethod
	// Seed drives every random choice of the run (zero is a valid seed).
	Seed int64
	// OutDir receives one directory per run with the nodes' logs, kept only
	// if the run failed (or KeepAll), plus the history and porcupine's
	// visualization on failure. Empty means the system's temp directory.
	OutDir string
	// KeepAll keeps the run directory even when everything passed.
	KeepAll bool
	// Hold is how long a fault lasts (zero: 4s).
	Hold time.Duration
	// Warmup and Cooldown are the fault-free stretches before the first
	// fault and after the last heal (zero: 1.5s each).
	Warmup, Cooldown time.Duration
	// RecoveryTimeout bounds the wait for a healthy cluster after a heal
	// (zero: 20s).
	RecoveryTimeout time.Duration
	// CheckTimeout bounds the linearizability search (zero: 60s).
	CheckTimeout time.Duration
	// Heartbeat and ElectionTimeout are the nodes' raft timing (zero: the
	// cluster package's defaults for the network mode: 50ms and 500ms in
	// proxy mode, the binary's 100ms and 1s in netns mode).
	Heartbeat, ElectionTimeout time.Duration
	// MaxUnavailable, when positive, turns the availability numbers into a
	// check: a fault with a longer stretch without a successful write fails
	// the "availability" check. Zero only reports them.
	MaxUnavailable time.Duration
	// LogLevel is the nodes' log level (zero: info).
	LogLevel string
	// Workload adjusts the workload; Endpoints and Seed are filled in.
	Workload workload.Config
	// Logger receives progress (nil = discard).
	Logger *slog.Logger
}

// Validate reports the first setting that cannot work. It changes nothing.
func (o Options) Validate() error {
	if o.Binary == "" {
		return fmt.Errorf("%w: no server binary", ErrInvalidOptions)
	}
	switch o.Starve {
	case "", StarveLeader, StarveFollower:
	default:
		return fmt.Errorf("%w: starve %q (want leader or follower)", ErrInvalidOptions, o.Starve)
	}
	if o.Hold < 0 || o.Warmup < 0 || o.Cooldown < 0 || o.RecoveryTimeout < 0 || o.CheckTimeout < 0 {
		return fmt.Errorf("%w: negative duration", ErrInvalidOptions)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Hold == 0 {
		o.Hold = DefaultHold
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Cooldown == 0 {
		o.Cooldown = DefaultCooldown
	}
	if o.RecoveryTimeout == 0 {
		o.RecoveryTimeout = DefaultRecoveryTimeout
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.OutDir == "" {
		o.OutDir = os.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Flavor == 0 {
		o.Flavor = cluster.Meshkv
	}
	if o.Net == 0 {
		o.Net = cluster.Proxy
	}
	if o.StarveMethod == 0 {
		o.StarveMethod = cluster.StarveQuota
	}
	return o
}

// Roles whose CPU Options.Starve can saturate.
const (
	StarveLeader   = "leader"
	StarveFollower = "follower"
)

// SkipReason says why sc cannot run with opts on this machine, or "".
func SkipReason(sc Scenario, opts Options) string {
	opts = opts.withDefaults()
	if opts.Flavor == cluster.Etcd && sc.MeshkvOnly != "" {
		return "not applicable to etcd: " + sc.MeshkvOnly
	}
	if opts.Net == cluster.Netns {
		if err := cluster.NetnsAvailable(); err != nil {
			return err.Error()
		}
	}
	if sc.NeedsStarve && opts.Starve != "" {
		return "the scenario starves members itself (drop --starve)"
	}
	if sc.NeedsStarve || opts.Starve != "" {
		if err := cluster.StarveAvailable(opts.StarveMethod); err != nil {
			return err.Error()
		}
	}
	return ""
}

// Run runs one scenario on a fresh cluster and judges it. Problems of the
// harness (the cluster did not start, a fault could not be injected) are
// reported in Report.Error; the checks still run on whatever was recorded.
// The cluster's processes are always stopped before Run returns.
func Run(ctx context.Context, sc Scenario, opts Options) *Report {
	opts = opts.withDefaults()
	rep := &Report{Scenario: sc.Name, Seed: opts.Seed, Flavor: opts.Flavor.String(), Net: opts.Net.String(), Target: sc.Target}
	started := time.Now()
	defer func() { rep.Duration = time.Since(started) }()
	if err := opts.Validate(); err != nil {
		rep.Error = err.Error()
		return rep
	}
	if why := SkipReason(sc, opts); why != "" {
		rep.Skipped = why
		return rep
	}
	dir, err := os.MkdirTemp(opts.OutDir, fmt.Sprintf("chaos-%s-%s-", sc.Name, time.Now().Format("150405")))
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Dir = dir
	log := opts.Logger.With("scenario", sc.Name)

	sctx, cancel := context.WithTimeout(ctx, DefaultStartTimeout)
	cl, err := cluster.Start(sctx, cluster.Config{
		Binary:          opts.Binary,
		Flavor:          opts.Flavor,
		Net:             opts.Net,
		Starve:          opts.StarveMethod,
		Nodes:           sc.Nodes,
		TargetVoters:    sc.Voters,
		Heartbeat:       opts.Heartbeat,
		ElectionTimeout: opts.ElectionTimeout,
		LogLevel:        opts.LogLevel,
		Dir:             filepath.Join(dir, "logs"),
		Logger:          log,
	})
	cancel()
	if errors.Is(err, cluster.ErrNetnsUnavailable) {
		rep.Skipped = err.Error()
		_ = os.RemoveAll(dir)
		rep.Dir = ""
		return rep
	}
	if err != nil {
		rep.Error = "cluster did not start: " + err.Error()
		return rep
	}
	rep.Heartbeat, rep.ElectionTimeout = cl.Timing()
	defer func() {
		if err := cl.Close(); err != nil {
			log.Warn("stopping the cluster", "err", err)
		}
		if !rep.Failed() && !opts.KeepAll {
			_ = os.RemoveAll(dir)
			rep.Dir = ""
		}
	}()

	wcfg := opts.Workload
	wcfg.Endpoints = cl.Endpoints()
	wcfg.Seed = opts.Seed
	wcfg.Logger = log
	w, err := workload.Start(wcfg)
	if err != nil {
		rep.Error = "workload did not start: " + err.Error()
		return rep
	}
	defer w.Close()

	env := &Env{
		Cluster:         cl,
		Rand:            rand.New(rand.NewPCG(uint64(opts.Seed), 0x6368616f73)),
		Hold:            opts.Hold,
		Log:             log,
		w:               w,
		recoveryTimeout: opts.RecoveryTimeout,
	}
	rep.Started = time.Now().Add(-w.Now())
	env.Notef("%v cluster of %d up (%v network, heartbeat %v, election timeout %v): %v; the run's clock started at %s (node logs use wall time)",
		opts.Flavor, sc.Nodes, opts.Net, rep.Heartbeat, rep.ElectionTimeout, cluster.Names(cl.Nodes()), rep.Started.Format("15:04:05.000"))
	for _, n := range cl.Nodes() {
		if n.Netns != "" {
			env.Notef("%s: netns %s, client %s, peer %s", n.Name, n.Netns, n.ClientURL, n.MeshAddr)
		}
	}
	scriptErr := env.Sleep(ctx, opts.Warmup)
	if scriptErr == nil && opts.Starve != "" {
		rep.Starved, scriptErr = env.starve(ctx, opts.Starve)
	}
	if scriptErr == nil {
		scriptErr = sc.Faults(ctx, env)
	}
	if rep.Starved != "" {
		if err := env.unstarve(rep.Starved); err != nil {
			env.Notef("giving %s its CPU back: %v", rep.Starved, err)
		}
	}
	if scriptErr != nil {
		rep.Error = "fault script: " + scriptErr.Error()
		env.Notef("fault script failed: %v", scriptErr)
	}
	// Whatever happened, heal everything and let the cluster settle before
	// reading back.
	for _, n := range cl.Nodes() {
		if n.State() == cluster.Paused {
			_ = cl.Resume(n.Name)
		}
	}
	_ = cl.HealAll()
	_, errStr := env.recover(ctx)
	unhealthy := errStr != ""
	if unhealthy && rep.Error == "" {
		rep.Error = "cluster not healthy after the final heal: " + errStr
	}
	_ = env.Sleep(ctx, opts.Cooldown)
	end := w.Now()
	env.Notef("collecting")

	cctx, cancel := context.WithTimeout(ctx, opts.RecoveryTimeout+10*time.Second)
	hist, err := w.Collect(cctx)
	cancel()
	if err != nil {
		if rep.Error == "" {
			rep.Error = "collect: " + err.Error()
		}
		_, _, rep.Timeline = env.snapshot()
		return rep
	}
	if ctx.Err() != nil {
		rep.Error = "interrupted"
		_, _, rep.Timeline = env.snapshot()
		return rep
	}
	env.Notef("collected %d ops, %d acquisitions, %d watch events", len(hist.Ops), len(hist.Acquisitions), len(hist.Watch.Events))
	if unhealthy {
		// Leave something to read: where every node was stuck.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cl.DumpStacks(dctx); err == nil {
			env.Notef("cluster unhealthy at the end: goroutine stacks dumped into the node logs")
		}
		cancel()
	}
	judge(rep, hist, env, end, opts, log)
	accountMembers(rep, hist, cl, rep.Started, end)
	rep.Checks = append(rep.Checks, check.Consistent(hashMembers(ctx, cl)))
	_, _, rep.Timeline = env.snapshot()
	if rep.Failed() {
		rep.saveArtifacts(hist, log)
	}
	return rep
}

// judge runs the checkers and fills the report.
func judge(rep *Report, h *workload.History, env *Env, end time.Duration, opts Options, log *slog.Logger) {
	var okWrites []time.Duration
	for _, op := range h.Ops {
		switch op.Outcome {
		case check.OK:
			rep.Ops.OK++
			if op.IsWrite() && op.Endpoint != "final" {
				okWrites = append(okWrites, op.Return)
			}
		case check.Failed:
			rep.Ops.Failed++
		case check.Indeterminate:
			rep.Ops.Indeterminate++
		}
	}
	rep.Locks = h.LockStats

	log.Info("checking linearizability", "ops", len(h.Ops))
	lin := check.Linearizable(h.Ops, opts.CheckTimeout)
	rep.lin = &lin
	rep.Checks = append(rep.Checks, lin.Result, check.Revisions(h.Ops))

	switch {
	case h.LockSkip != "":
		rep.Checks = append(rep.Checks, check.Result{Check: "lock-safety", Status: check.Skip, Detail: h.LockSkip})
	case h.LockErr != "":
		// Without the committed versions only the acquisitions can be
		// judged.
		r := check.Locks(h.Acquisitions, nil, nil)
		if r.Status == check.Pass {
			r.Status, r.Detail = check.Inconclusive, h.LockErr
		}
		rep.Checks = append(rep.Checks, r)
	case h.LockStats.Acquired == 0:
		rep.Checks = append(rep.Checks, check.Result{Check: "lock-safety", Status: check.Inconclusive,
			Detail: fmt.Sprintf("no lock was ever acquired in %d attempts", h.LockStats.Attempts)})
	default:
		rep.Checks = append(rep.Checks, check.Locks(h.Acquisitions, h.Guarded, h.Chain))
	}

	switch {
	case h.WatchSkip != "":
		rep.Checks = append(rep.Checks, check.Result{Check: "watch", Status: check.Skip, Detail: h.WatchSkip})
	case h.Watch.To == 0:
		rep.Checks = append(rep.Checks, check.Result{Check: "watch", Status: check.Inconclusive, Detail: h.WatchErr})
	default:
		r := check.Watch(h.Watch, check.AckedWrites(h.Ops))
		if h.WatchErr != "" {
			r.Detail += "; " + h.WatchErr
		}
		rep.Checks = append(rep.Checks, r)
	}

	rep.Checks = append(rep.Checks, check.Durable(h.ReadBack))

	faults, members, _ := env.snapshot()
	rep.Checks = append(rep.Checks, members...)
	var rec check.Result
	rec.Check = "recovers-after-heal"
	rec.Status = check.Pass
	for i := range faults {
		f := &faults[i]
		f.Gap = check.LongestGap(okWrites, f.Window)
		f.LongestGap = f.Gap.Len()
		if f.LongestGap > rep.LongestGap {
			rep.LongestGap, rep.WorstFault = f.LongestGap, f.Name
		}
		if f.RecoveryErr != "" {
			rec.Status = check.Fail
			rec.Violations = append(rec.Violations, fmt.Sprintf("%s: %s", f.Name, f.RecoveryErr))
		}
		rep.Recovery = max(rep.Recovery, f.Recovery)
	}

	rec.Detail = fmt.Sprintf("%d faults, slowest recovery %v", len(faults), rep.Recovery.Round(time.Millisecond))
	rep.Checks = append(rep.Checks, rec)
	if opts.MaxUnavailable > 0 {
		avail := check.Result{Check: "availability", Status: check.Pass,
			Detail: fmt.Sprintf("longest stretch without a successful write %v, limit %v", rep.LongestGap.Round(time.Millisecond), opts.MaxUnavailable)}
		for _, f := range faults {
			if f.LongestGap > opts.MaxUnavailable {
				avail.Status = check.Fail
				avail.Violations = append(avail.Violations, fmt.Sprintf("%s: no successful write for %v (from %.2fs to %.2fs)",
					f.Name, f.LongestGap.Round(time.Millisecond), f.Gap.Start.Seconds(), f.Gap.End.Seconds()))
			}
		}
		rep.Checks = append(rep.Checks, avail)
	}
	rep.Faults = faults
	rep.OverallGap = check.LongestGap(okWrites, check.Window{Name: "run", Start: 0, End: end}).Len()
}

// saveArtifacts writes the history and, for a linearizability failure,
// porcupine's visualization into the run directory.
func (r *Report) saveArtifacts(h *workload.History, log *slog.Logger) {
	if r.Dir == "" {
		return
	}
	hp := filepath.Join(r.Dir, "history.json")
	if b, err := json.MarshalIndent(h, "", " "); err == nil {
		if err := os.WriteFile(hp, b, 0o644); err == nil {
			r.Artifacts = append(r.Artifacts, hp)
		} else {
			log.Warn("saving history", "err", err)
		}
	}
	if r.lin != nil && r.lin.Status != check.Pass {
		vp := filepath.Join(r.Dir, "linearizability.html")
		if err := r.lin.Visualize(vp); err == nil {
			r.Artifacts = append(r.Artifacts, vp)
			for i := range r.Checks {
				if r.Checks[i].Check == r.lin.Check {
					r.Checks[i].Artifacts = append(r.Checks[i].Artifacts, vp)
				}
			}
		} else {
			log.Warn("writing the visualization", "err", err)
		}
	}
	rp := filepath.Join(r.Dir, "report.json")
	if b, err := json.MarshalIndent(r, "", " "); err == nil && os.WriteFile(rp, b, 0o644) == nil {
		r.Artifacts = append(r.Artifacts, rp)
	}
}
