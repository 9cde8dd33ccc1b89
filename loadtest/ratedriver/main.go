// ratedriver sends HTTP POSTs at a fixed rate (open loop) and reports latency percentiles.
// With -idempotency-share, that share of the requests carries an Idempotency-Key header, a new
// key for each request (UUID-shaped, as a storefront's would be).
//
// Latency is measured from each request's scheduled send time, not from when a connection was
// free: a server that stalls is charged for the queue it causes (no coordinated omission).
//
//	ratedriver -url http://127.0.0.1:8000/orders -bodies bodies.jsonl -rate 7500 -duration 10s
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	TargetRate   float64            `json:"target_rate"`
	AchievedRate float64            `json:"achieved_rate"`
	Sent         int64              `json:"sent"`
	Completed    int64              `json:"completed"`
	Errors       int64              `json:"errors"`
	Dropped      int64              `json:"dropped"`
	StatusCounts map[int]int64      `json:"status_counts"`
	LatencyMs    map[string]float64 `json:"latency_ms"`
}

func readBodies(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bodies [][]byte
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := bytes.TrimSpace(scanner.Bytes())
		if len(line) > 0 {
			bodies = append(bodies, append([]byte(nil), line...))
		}
	}
	return bodies, scanner.Err()
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8000/orders", "target URL")
	bodiesPath := flag.String("bodies", "", "file with one JSON request body per line")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	conns := flag.Int("conns", 512, "most requests in flight; past it a scheduled request is dropped")
	keyShare := flag.Float64("idempotency-share", 0, "share of requests (0-1) sent with a new Idempotency-Key")
	flag.Parse()
	if *keyShare < 0 || *keyShare > 1 {
		fmt.Fprintln(os.Stderr, "ratedriver: -idempotency-share must be between 0 and 1")
		os.Exit(2)
	}
	run := rand.Uint64() // this run's keys differ from every other run's

	bodies, err := readBodies(*bodiesPath)
	if err != nil || len(bodies) == 0 {
		fmt.Fprintln(os.Stderr, "ratedriver: need -bodies with at least one line:", err)
		os.Exit(2)
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        *conns,
			MaxIdleConnsPerHost: *conns,
			MaxConnsPerHost:     *conns,
			DisableCompression:  true,
		},
	}

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, int(*rate*duration.Seconds()))
		statuses  = map[int]int64{}
		inFlight  atomic.Int64
		errors    atomic.Int64
		dropped   atomic.Int64
		wg        sync.WaitGroup
	)
	send := func(scheduled time.Time, body []byte, key string) {
		defer wg.Done()
		defer inFlight.Add(-1)
		req, err := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
		if err != nil {
			errors.Add(1)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			errors.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		elapsed := time.Since(scheduled)
		mu.Lock()
		latencies = append(latencies, elapsed)
		statuses[resp.StatusCode]++
		mu.Unlock()
	}

	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now()
	end := start.Add(*duration)
	var sent int64
	for {
		now := time.Now()
		if now.After(end) {
			break
		}
		due := int64(now.Sub(start)/interval) + 1
		for ; sent < due; sent++ {
			scheduled := start.Add(time.Duration(sent) * interval)
			if inFlight.Load() >= int64(*conns) {
				dropped.Add(1)
				continue
			}
			key := ""
			if int64(float64(sent+1)**keyShare) > int64(float64(sent)**keyShare) {
				key = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(run>>32), uint16(run>>16),
					uint16(run), uint16(sent>>48), sent&0xffffffffffff)
			}
			inFlight.Add(1)
			wg.Add(1)
			go send(scheduled, bodies[sent%int64(len(bodies))], key)
		}
		time.Sleep(interval / 2)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	out := result{
		TargetRate:   *rate,
		AchievedRate: float64(len(latencies)) / elapsed,
		Sent:         sent,
		Completed:    int64(len(latencies)),
		Errors:       errors.Load(),
		Dropped:      dropped.Load(),
		StatusCounts: statuses,
		LatencyMs: map[string]float64{
			"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
			"p99": percentile(latencies, 99), "p99.9": percentile(latencies, 99.9),
			"max": percentile(latencies, 100),
		},
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
