package peerlink_test

import (
	"fmt"
	"log"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// printer is a Handler that prints what arrives and signals each datagram.
type printer struct {
	name string
	got  chan string
}

func (p printer) OnLinkUp(info peerlink.PeerInfo) {}
func (p printer) OnDatagram(peer peerlink.PublicKey, data []byte) {
	p.got <- p.name + " got " + string(data)
}
func (p printer) OnStream(peer peerlink.PublicKey, s *peerlink.Stream)                   { _ = s.Close() }
func (p printer) OnLinkDown(peer peerlink.PublicKey, reason error, undelivered [][]byte) {}

func Example() {
	secret, err := peerlink.NewClusterSecret([]byte("contents of a password file, long and random"))
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan string, 1)
	start := func(name string) *peerlink.Node {
		id, err := peerlink.NewIdentity()
		if err != nil {
			log.Fatal(err)
		}
		n, err := peerlink.New(peerlink.Config{
			ListenAddr:    "127.0.0.1:0",
			Identity:      id,
			ClusterSecret: secret,
			ClusterName:   "example",
			Handler:       printer{name: name, got: got},
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := n.Start(); err != nil {
			log.Fatal(err)
		}
		return n
	}
	a, b := start("a"), start("b")
	defer a.Close()
	defer b.Close()

	if err := a.SetTargets([]string{b.Addr()}); err != nil {
		log.Fatal(err)
	}
	for !a.Send(b.PublicKey(), []byte("hello")) { // false until the link is up
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(<-got)
	fmt.Println(len(a.Links()), "link, dialled:", a.Links()[0].Dialled)
	// Output:
	// b got hello
	// 1 link, dialled: true
}
