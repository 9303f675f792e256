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
// runtime retired an idle thread.
type spawner struct {
	reqc  chan spawnReq
	quitc chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

type spawnReq struct {
	cmd   *exec.Cmd
	replc chan error
}

func newSpawner() *spawner {
	s := &spawner{reqc: make(chan spawnReq), quitc: make(chan struct{})}
	s.wg.Go(func() {
		runtime.LockOSThread()
		// The goroutine exits locked: its thread is then destroyed, which is
		// what the children's parent-death signal watches. By then Close
		// has killed them.
		for {
			select {
			case r := <-s.reqc:
				r.replc <- r.cmd.Start()
			case <-s.quitc:
				return
			}
		}
	})
	return s
}

// start starts cmd on the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, replc: make(chan error, 1)}
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

// startProcess runs binary with args, its output appended to logPath, and
// reaps it on a goroutine owned by wg.
func startProcess(sp *spawner, wg *sync.WaitGroup, binary string, args []string, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: log file: %w", err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := sp.start(cmd); err != nil {
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
