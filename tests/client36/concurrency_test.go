package client36

import (
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func TestMutex(t *testing.T) {
	n := startNode(t)
	ctx := testCtx(t)
	s1, err := concurrency.NewSession(n.client(t), concurrency.WithTTL(30))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(n.client(t), concurrency.WithTTL(30))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s2.Close()

	m1, m2 := concurrency.NewMutex(s1, "/lock/a"), concurrency.NewMutex(s2, "/lock/a")
	if err := m1.Lock(ctx); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("TryLock of a held lock: err = %v, want ErrLocked", err)
	}
	// The owner's fencing compare holds in a transaction.
	txn, err := s1.Client().Txn(ctx).If(m1.IsOwner()).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("IsOwner txn = %v, %v", txn, err)
	}

	acquired := make(chan error, 1)
	go func() { acquired <- m2.Lock(ctx) }()
	select {
	case err := <-acquired:
		t.Fatalf("second Lock returned %v while the lock is held", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	select {
	case err := <-acquired:
		if err != nil {
			t.Fatalf("second Lock: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("second Lock not granted 30s after Unlock")
	}
	if m2.Header().Revision <= m1.Header().Revision {
		t.Errorf("second holder's revision %d not after the first's %d", m2.Header().Revision, m1.Header().Revision)
	}
	if err := m2.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

func TestElection(t *testing.T) {
	n := startNode(t)
	ctx := testCtx(t)
	s1, err := concurrency.NewSession(n.client(t), concurrency.WithTTL(30))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(n.client(t), concurrency.WithTTL(30))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s2.Close()

	e1, e2 := concurrency.NewElection(s1, "/election/x"), concurrency.NewElection(s2, "/election/x")
	obs := e2.Observe(ctx)
	if err := e1.Campaign(ctx, "one"); err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	waitLeaderValue(t, obs, "one")
	if err := e1.Proclaim(ctx, "one-again"); err != nil {
		t.Fatalf("Proclaim: %v", err)
	}
	waitLeaderValue(t, obs, "one-again")
	leader, err := e2.Leader(ctx)
	if err != nil || len(leader.Kvs) != 1 || string(leader.Kvs[0].Value) != "one-again" {
		t.Fatalf("Leader = %v, %v", leader, err)
	}

	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "two") }()
	select {
	case err := <-won:
		t.Fatalf("second Campaign returned %v while the first leads", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := e1.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatalf("second Campaign: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("second candidate not elected 30s after Resign")
	}
	waitLeaderValue(t, obs, "two")
}

// waitLeaderValue reads observations until the leader's value is want.
func waitLeaderValue(t *testing.T, obs <-chan clientv3.GetResponse, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case resp, ok := <-obs:
			if !ok {
				t.Fatalf("Observe closed before the leader's value was %q", want)
			}
			if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == want {
				return
			}
		case <-deadline:
			t.Fatalf("leader's value not %q within 30s", want)
		}
	}
}
