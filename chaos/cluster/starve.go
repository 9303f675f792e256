package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// StarveMethod is how Cluster.Starve saturates a member's CPU.
//
// Measured on a 2-core machine (a meshkv leader starved for 8 s): StarveQuota
// left the member 1.0% of one CPU and touched nothing else; StarvePin left
// it 0.2%, but the busy processes took the whole CPU from every other
// process too (the harness's own 8 s timer fired 2.4 s late), so its
// numbers mix the member's starvation with the harness's. StarveQuota is
// the default.
type StarveMethod int

// Starvation methods.
const (
	// StarvePin pins every thread of the member to one CPU and runs busy
	// processes pinned to that CPU at the highest priority (nice -20)
	// while the member keeps nice 0: the scheduler then gives the member
	// about 1% of that CPU, in slivers. Other processes move to the other
	// CPUs.
	StarvePin StarveMethod = iota + 1
	// StarveQuota moves the member into a CPU cgroup with a hard quota
	// (starveQuota of starvePeriod, 1% of one CPU): it runs for 5 ms, then
	// is throttled for the rest of each 500 ms period, whatever else runs.
	StarveQuota
)

// Parameters of the methods.
const (
	starveHogs   = 2                     // busy processes of StarvePin
	starveNice   = -20                   // their priority
	starvePeriod = 500_000               // µs, StarveQuota's cgroup period
	starveQuota  = 5_000                 // µs per period: 1% of one CPU
	hogScript    = "while :; do :; done" // a busy loop of the shell's builtins
)

func (m StarveMethod) String() string {
	switch m {
	case StarvePin:
		return "pin"
	case StarveQuota:
		return "quota"
	}
	return fmt.Sprintf("StarveMethod(%d)", int(m))
}

// ParseStarveMethod parses the String form of a StarveMethod.
func ParseStarveMethod(s string) (StarveMethod, error) {
	for _, m := range []StarveMethod{StarvePin, StarveQuota} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: starvation method %q (want pin or quota)", ErrInvalidConfig, s)
}

// ErrStarveUnavailable is wrapped when a member's CPU cannot be starved
// here (not root, no CPU cgroup controller).
var ErrStarveUnavailable = errors.New("cluster: CPU starvation unavailable")

// StarveAvailable reports why method cannot run here, or nil.
func StarveAvailable(m StarveMethod) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (needs nice -20 and CPU cgroups)", ErrStarveUnavailable)
	}
	switch m {
	case StarvePin:
		if _, err := exec.LookPath("sh"); err != nil {
			return fmt.Errorf("%w: no sh for the busy processes", ErrStarveUnavailable)
		}
		return nil
	case StarveQuota:
		if _, err := findCPUCgroup(); err != nil {
			return fmt.Errorf("%w: %v", ErrStarveUnavailable, err)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown method %d", ErrStarveUnavailable, int(m))
}

// StarveStats says how much CPU a starved member still got: its CPU time
// (user and system, all threads) over the wall time of the starvation.
type StarveStats struct {
	Method StarveMethod
	Wall   time.Duration
	CPU    time.Duration
}

// Share is the fraction of one CPU the member used.
func (s StarveStats) Share() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return float64(s.CPU) / float64(s.Wall)
}

func (s StarveStats) String() string {
	return fmt.Sprintf("%v starvation: %v of CPU in %v (%.1f%% of one CPU)", s.Method, s.CPU.Round(10*time.Millisecond),
		s.Wall.Round(10*time.Millisecond), 100*s.Share())
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuTime reads a process's user plus system time from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU extracts utime+stime (fields 14 and 15) from the text of
// /proc/PID/stat.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("cluster: malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("cluster: short /proc stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cluster: /proc stat cpu times: %w", err)
	}
	return time.Duration(u+st) * clockTick, nil
}

// starvation is one member's starvation in progress.
type starvation struct {
	method StarveMethod
	pid    int
	start  time.Time
	cpu0   time.Duration
	// pin
	cpus []int // the member's affinity before
	hogs []*process
	// quota
	cg   cpuCgroup
	dir  string // the cgroup created for the member
	from string // the member's cgroup before (v1 or v2 path under the mount)
}

// cpuCgroup is the CPU controller's mount.
type cpuCgroup struct {
	root string // mount point, e.g. /sys/fs/cgroup/cpu (v1) or /sys/fs/cgroup (v2)
	v2   bool
}

// findCPUCgroup finds a writable CPU controller: cgroup v2 with cpu enabled,
// or v1's cpu hierarchy.
func findCPUCgroup() (cpuCgroup, error) {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(b)), "cpu") {
		return cpuCgroup{root: "/sys/fs/cgroup", v2: true}, nil
	}
	for _, p := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(p, "cpu.cfs_quota_us")); err == nil {
			return cpuCgroup{root: p}, nil
		}
	}
	return cpuCgroup{}, errors.New("no CPU cgroup controller (v2 cpu.max or v1 cpu.cfs_quota_us)")
}

// cgroupOf returns pid's cgroup path (relative to the controller's mount)
// from /proc/PID/cgroup.
func cgroupOf(pid int, v2 bool) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	return parseProcCgroup(string(b), v2)
}

// parseProcCgroup picks the cpu controller's path (v1: the line whose
// controller list has cpu; v2: the "0::" line).
func parseProcCgroup(s string, v2 bool) (string, error) {
	for _, l := range strings.Split(s, "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if v2 && f[0] == "0" && f[1] == "" {
			return f[2], nil
		}
		if !v2 && slices.Contains(strings.Split(f[1], ","), "cpu") {
			return f[2], nil
		}
	}
	return "", errors.New("cluster: no cpu cgroup in /proc/PID/cgroup")
}

func (cg cpuCgroup) setQuota(dir string) error {
	if cg.v2 {
		return os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", starveQuota, starvePeriod), 0o644)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(starvePeriod)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(starveQuota)), 0o644)
}

// move puts pid (every thread of it) into the cgroup dir.
func (cg cpuCgroup) move(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// cgroupName names the cgroup of member in cluster run of owner o, so that
// leftovers of dead runs can be found like their namespaces.
func cgroupName(o owner, run int, member string) string { return nsName(o, run, member) }

// removeStaleCgroups removes the CPU cgroups of dead chaos runs (empty ones
// only: the kernel refuses the others).
func removeStaleCgroups(alive func(owner) bool) ([]string, error) {
	cg, err := findCPUCgroup()
	if err != nil {
		return nil, nil
	}
	ents, err := os.ReadDir(cg.root)
	if err != nil {
		return nil, nil
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	var removed []string
	var errs []error
	for _, n := range staleNamespaces(names, alive) {
		p := filepath.Join(cg.root, n)
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// Thread affinity, through the raw system calls (the syscall package has
// no wrappers for them).

const cpuMaskWords = 16 // 1024 CPUs

func getAffinity(tid int) ([]int, error) {
	var mask [cpuMaskWords]uint64
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
	if e != 0 {
		return nil, e
	}
	var cpus []int
	for i, w := range mask {
		for b := range 64 {
			if w&(1<<b) != 0 {
				cpus = append(cpus, i*64+b)
			}
		}
	}
	return cpus, nil
}

func setAffinity(tid int, cpus []int) error {
	var mask [cpuMaskWords]uint64
	for _, c := range cpus {
		if c < 0 || c >= cpuMaskWords*64 {
			return fmt.Errorf("cluster: cpu %d out of range", c)
		}
		mask[c/64] |= 1 << (c % 64)
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
	if e != 0 {
		return e
	}
	return nil
}

// threads lists pid's thread ids.
func threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, tid)
		}
	}
	return out, nil
}

// pinAll sets the affinity of every thread of pid (threads started later
// inherit it from their creator).
func pinAll(pid int, cpus []int) error {
	tids, err := threads(pid)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tids {
		if err := setAffinity(t, cpus); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("thread %d: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// startStarve starves process pid (member name) with method m.
func startStarve(m StarveMethod, sp *spawner, wg *sync.WaitGroup, o owner, run int, name string, pid int, logDir string) (*starvation, error) {
	s := &starvation{method: m, pid: pid, start: time.Now()}
	s.cpu0, _ = cpuTime(pid)
	switch m {
	case StarvePin:
		cpus, err := getAffinity(pid)
		if err != nil || len(cpus) == 0 {
			return nil, fmt.Errorf("cluster: affinity of %s: %v", name, err)
		}
		s.cpus = cpus
		target := []int{cpus[len(cpus)-1]}
		for i := range starveHogs {
			p, err := startProcess(sp, wg, "sh", []string{"-c", hogScript}, "", filepath.Join(logDir, fmt.Sprintf("%s-hog%d.log", name, i)))
			if err != nil {
				_ = s.stop()
				return nil, err
			}
			s.hogs = append(s.hogs, p)
			if err := setAffinity(p.pid(), target); err != nil {
				_ = s.stop()
				return nil, fmt.Errorf("cluster: pinning a busy process: %w", err)
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.pid(), starveNice); err != nil {
				_ = s.stop()
				return nil, fmt.Errorf("cluster: raising a busy process's priority: %w", err)
			}
		}
		if err := pinAll(pid, target); err != nil {
			_ = s.stop()
			return nil, fmt.Errorf("cluster: pinning %s: %w", name, err)
		}
		return s, nil
	case StarveQuota:
		cg, err := findCPUCgroup()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStarveUnavailable, err)
		}
		from, err := cgroupOf(pid, cg.v2)
		if err != nil {
			return nil, err
		}
		s.cg, s.from = cg, from
		s.dir = filepath.Join(cg.root, cgroupName(o, run, name))
		if err := os.Mkdir(s.dir, 0o755); err != nil {
			return nil, fmt.Errorf("cluster: cgroup for %s: %w", name, err)
		}
		if err := cg.setQuota(s.dir); err != nil {
			_ = s.stop()
			return nil, fmt.Errorf("cluster: quota for %s: %w", name, err)
		}
		if err := cg.move(s.dir, pid); err != nil {
			_ = s.stop()
			return nil, fmt.Errorf("cluster: moving %s into its cgroup: %w", name, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: unknown method %d", ErrStarveUnavailable, int(m))
}

// stats measures the starvation so far.
func (s *starvation) stats() StarveStats {
	st := StarveStats{Method: s.method, Wall: time.Since(s.start)}
	if c, err := cpuTime(s.pid); err == nil {
		st.CPU = c - s.cpu0
	}
	return st
}

// stop ends the starvation: the busy processes are killed and the member
// gets its CPUs (or its cgroup) back. It is safe on a member that died.
func (s *starvation) stop() error {
	var errs []error
	for _, h := range s.hogs {
		errs = append(errs, h.kill())
	}
	s.hogs = nil
	if s.cpus != nil {
		if err := pinAll(s.pid, s.cpus); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.dir != "" {
		back := filepath.Join(s.cg.root, s.from)
		if err := s.cg.move(back, s.pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("cluster: moving pid %d back to %s: %w", s.pid, back, err))
		}
		if err := os.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		} else {
			s.dir = ""
		}
	}
	return errors.Join(errs...)
}
