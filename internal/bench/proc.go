package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat. Linux fixes it at
// 100 ticks per second for every architecture's user-space ABI.
const userHZ = 100

// ErrProc is wrapped by errors reading a process's /proc entries.
var ErrProc = errors.New("bench: cannot read process statistics")

// procFS reads process statistics from a proc filesystem mounted at root
// ("/proc" on Linux; tests point it at a fake tree).
type procFS struct{ root string }

// procRoot is where Linux mounts the proc filesystem.
const procRoot = "/proc"

// cpuTime returns the user+system CPU time the process has used so far.
func (p procFS) cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("%w: pid %d: %v", ErrProc, pid, err)
	}
	ticks, err := parseStatTicks(string(b))
	if err != nil {
		return 0, fmt.Errorf("%w: pid %d: %v", ErrProc, pid, err)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStatTicks returns utime+stime (fields 14 and 15) of a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may itself hold
// spaces and parentheses, so fields are counted after its last ')'.
func parseStatTicks(line string) (uint64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: utime/stime: %v", err)
	}
	return utime + stime, nil
}

// totalCPU sums cpuTime over pids.
func (p procFS) totalCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := p.cpuTime(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// rss returns the resident set size of the process in bytes (VmRSS).
func (p procFS) rss(pid int) (int64, error) {
	f, err := os.Open(filepath.Join(p.root, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("%w: pid %d: %v", ErrProc, pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		n, err := parseKB(rest)
		if err != nil {
			return 0, fmt.Errorf("%w: pid %d: VmRSS: %v", ErrProc, pid, err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%w: pid %d: %v", ErrProc, pid, err)
	}
	return 0, fmt.Errorf("%w: pid %d: no VmRSS line (a zombie or kernel thread?)", ErrProc, pid)
}

// parseKB reads "  12345 kB" as bytes.
func parseKB(s string) (int64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), " ")
	if strings.TrimSpace(unit) != "kB" {
		return 0, fmt.Errorf("unit %q, want kB", unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", num)
	}
	return n * 1024, nil
}

// totalRSS sums rss over pids.
func (p procFS) totalRSS(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		n, err := p.rss(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// ProcessCPU returns the user+system CPU time used so far by the processes,
// summed, from /proc/PID/stat (Linux, 10ms resolution).
func ProcessCPU(pids []int) (time.Duration, error) { return procFS{procRoot}.totalCPU(pids) }

// ProcessRSS returns the summed resident memory of the processes in bytes,
// from VmRSS in /proc/PID/status (Linux).
func ProcessRSS(pids []int) (int64, error) { return procFS{procRoot}.totalRSS(pids) }
