package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// ErrNotRunning is returned for a signal to a process that has exited.
var ErrNotRunning = errors.New("cluster: process not running")

// process is one child meshkv process.
type process struct {
	cmd   *exec.Cmd
	log   *os.File
	donec chan struct{} // closed once the process has been reaped

	mu     sync.Mutex
	err    error // exit status, valid once donec is closed
	paused bool
}

// spawner starts processes from one goroutine locked to its OS thread, so the
// parent-death signal (delivered when the thread that started a child exits)
// fires only when the cluster is done with the thread, never because the Go
// runtime retired an idle thread. The same thread starts children inside a
// network namespace: it enters the namespace (setns), forks, and returns to
// its own; a child inherits the namespace of the thread that forked it.
type spawner struct {
	reqc  chan spawnReq
	quitc chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

type spawnReq struct {
	cmd   *exec.Cmd
	netns string // path of the namespace to start cmd in; "" for the spawner's own
	replc chan error
}

// errSpawnerBroken is returned once the spawner's thread could not return
// to its own namespace: it starts nothing more.
var errSpawnerBroken = errors.New("cluster: the spawner thread is stuck in another network namespace")

func newSpawner() *spawner {
	s := &spawner{reqc: make(chan spawnReq), quitc: make(chan struct{})}
	s.wg.Go(func() {
		runtime.LockOSThread()
		// The goroutine exits locked: its thread is then destroyed, which is
		// what the children's parent-death signal watches. By then Close
		// has killed them.
		var home *os.File // the thread's own namespace, opened on first use
		defer func() {
			if home != nil {
				_ = home.Close()
			}
		}()
		broken := false
		for {
			select {
			case r := <-s.reqc:
				if r.netns == "" {
					r.replc <- r.cmd.Start()
					continue
				}
				if broken {
					r.replc <- errSpawnerBroken
					continue
				}
				if home == nil {
					f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
					if err != nil {
						r.replc <- fmt.Errorf("cluster: own network namespace: %w", err)
						continue
					}
					home = f
				}
				var err error
				broken, err = startIn(r.cmd, r.netns, home)
				r.replc <- err
			case <-s.quitc:
				return
			}
		}
	})
	return s
}

// startIn starts cmd inside the network namespace at path and returns the
// calling thread to home. broken reports that the return failed.
func startIn(cmd *exec.Cmd, path string, home *os.File) (broken bool, err error) {
	ns, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("cluster: network namespace: %w", err)
	}
	defer ns.Close()
	if err := setns(ns); err != nil {
		return false, fmt.Errorf("cluster: entering %s: %w", path, err)
	}
	startErr := cmd.Start()
	if err := setns(home); err != nil {
		return true, errors.Join(startErr, fmt.Errorf("%w: %v", errSpawnerBroken, err))
	}
	return false, startErr
}

// setns moves the calling thread into the network namespace f refers to.
func setns(f *os.File) error {
	if sysSetns < 0 {
		return syscall.ENOSYS
	}
	num := sysSetns
	_, _, e := syscall.RawSyscall(uintptr(num), f.Fd(), syscall.CLONE_NEWNET, 0)
	if e != 0 {
		return e
	}
	return nil
}

// start starts cmd on the spawner's thread, inside the network namespace at
// path netns ("" for the spawner's own).
func (s *spawner) start(cmd *exec.Cmd, netns string) error {
	r := spawnReq{cmd: cmd, netns: netns, replc: make(chan error, 1)}
	select {
	case s.reqc <- r:
		return <-r.replc
	case <-s.quitc:
		return ErrClosed
	}
}

func (s *spawner) close() {
	s.once.Do(func() { close(s.quitc) })
	s.wg.Wait()
}

// startProcess runs binary with args inside the network namespace at path
// netns ("" for the caller's), its output appended to logPath, and reaps it
// on a goroutine owned by wg.
func startProcess(sp *spawner, wg *sync.WaitGroup, binary string, args []string, netns, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: log file: %w", err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := sp.start(cmd, netns); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cluster: start %s: %w", binary, err)
	}
	p := &process{cmd: cmd, log: f, donec: make(chan struct{})}
	wg.Go(func() {
		err := cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.donec)
	})
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has been reaped.
func (p *process) exited() bool {
	select {
	case <-p.donec:
		return true
	default:
		return false
	}
}

// exitErr is the exit status once exited.
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// signal sends sig to the process by PID.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return ErrNotRunning
	}
	if err := syscall.Kill(p.pid(), sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return ErrNotRunning
		}
		return fmt.Errorf("cluster: %v to pid %d: %w", sig, p.pid(), err)
	}
	return nil
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *process) kill() error {
	err := p.signal(syscall.SIGKILL)
	<-p.donec
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	return err
}

func (p *process) pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	return nil
}

func (p *process) resume() error {
	if err := p.signal(syscall.SIGCONT); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return nil
}

func (p *process) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}
