package bench

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// scraper fetches metrics pages the way a Prometheus server does: each URL
// on its own ticker, the whole body read and thrown away.
type scraper struct {
	urls     []string
	interval time.Duration
	client   *http.Client

	hist   *Histogram
	count  atomic.Uint64
	failed atomic.Uint64
	sizes  []atomic.Int64 // last page size per URL
}

func newScraper(urls []string, interval time.Duration) *scraper {
	return &scraper{
		urls:     urls,
		interval: interval,
		client:   &http.Client{Timeout: 10 * time.Second},
		hist:     NewHistogram(),
		sizes:    make([]atomic.Int64, len(urls)),
	}
}

// start scrapes until the returned stop function is called; stop waits for
// the scrapes in flight.
func (s *scraper) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Go(func() {
			t := time.NewTicker(s.interval)
			defer t.Stop()
			for {
				s.scrape(ctx, i, u)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func (s *scraper) scrape(ctx context.Context, i int, url string) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		s.failed.Add(1)
		return
	}
	// Prometheus asks for the text format, compressed.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.failed.Add(1)
		}
		return
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		if ctx.Err() == nil {
			s.failed.Add(1)
		}
		return
	}
	s.sizes[i].Store(n)
	s.count.Add(1)
	s.hist.Record(time.Since(start))
}

// stats reports the scrapes so far.
func (s *scraper) stats() *ScrapeStats {
	st := &ScrapeStats{URLs: len(s.urls), Interval: s.interval, Count: s.count.Load(), Failed: s.failed.Load(), Latency: s.hist.Summary()}
	for i := range s.sizes {
		st.Bytes += s.sizes[i].Load()
	}
	return st
}
