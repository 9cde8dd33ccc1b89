// ratedriver sends HTTP POSTs at a fixed rate (open loop) over a fixed set of keep-alive
// connections, as wrk does for the closed-loop peaks, and reports latency percentiles. With
// -idempotency-share, that share of the requests carries an Idempotency-Key header, a new key for
// each request (UUID-shaped, as a storefront's would be).
//
// Latency is measured from each request's scheduled send time, not from when a connection was
// free: a request scheduled while every connection waits on an answer queues here, and the queue
// is charged to the server (no coordinated omission). Past -in-flight requests queued or on the
// wire, a scheduled request is dropped and counted.
//
// The server holds at most -connections requests at once, as under wrk; the rest wait here,
// charged to it. HTTP/1.1 is written and read here by hand (the status line, Content-Length, the
// body), with Go code on one thread: this driver shares the benchmark's cores with the server it
// measures, and Go's net/http client, a goroutine per request on several threads, spent about as
// much CPU per request as the server did (README, "The open-loop driver's own cost").
//
//	ratedriver -url http://127.0.0.1:8000/orders -bodies bodies.jsonl -rate 7500 -duration 10s
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// As long as the net/http client it replaced allowed: an answer later than this is an error.
const answerTimeout = 10 * time.Second

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

// job is one scheduled request: its bytes as they go on the wire.
type job struct {
	scheduled time.Time
	request   []byte
}

// tally is what one connection saw; the connections' tallies are merged at the end.
type tally struct {
	latencies  []time.Duration
	statuses   map[int]int64
	errors     int64
	firstError error
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

// requestHead is a POST's request line and headers, without the blank line that ends them.
func requestHead(target *url.URL, bodyLength int) []byte {
	return []byte(fmt.Sprintf(
		"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
		target.RequestURI(), target.Host, bodyLength))
}

func request(head []byte, key string, body []byte) []byte {
	out := make([]byte, 0, len(head)+len(key)+len(body)+24)
	out = append(out, head...)
	if key != "" {
		out = append(out, "Idempotency-Key: "...)
		out = append(out, key...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	return append(out, body...)
}

// connection is one keep-alive connection to the server, answering one request at a time.
type connection struct {
	conn   net.Conn
	reader *bufio.Reader
}

func dial(address string) (*connection, error) {
	conn, err := net.DialTimeout("tcp", address, answerTimeout)
	if err != nil {
		return nil, err
	}
	return &connection{conn, bufio.NewReaderSize(conn, 16<<10)}, nil
}

// An answer this driver does not read: a malformed status line or header, or a body without a
// Content-Length (chunked). The servers it measures send none of these.
var errUnreadable = errors.New("an answer this driver cannot read")

// roundTrip sends one request and reads its answer whole: its status, and whether the server
// closes the connection after it.
func (c *connection) roundTrip(request []byte) (status int, closing bool, err error) {
	if err := c.conn.SetDeadline(time.Now().Add(answerTimeout)); err != nil {
		return 0, false, err
	}
	if _, err := c.conn.Write(request); err != nil {
		return 0, false, err
	}
	line, err := c.reader.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// HTTP/1.x puts the three digits of the status at bytes 9-11: "HTTP/1.1 201 Created\r\n".
	if len(line) < 12 {
		return 0, false, errUnreadable
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, errUnreadable
	}
	length := -1
	for {
		line, err = c.reader.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) <= 2 { // "\r\n": the headers end
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return 0, false, errUnreadable
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, false, errUnreadable
			}
		case bytes.EqualFold(name, []byte("connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	if status == 204 || status == 304 {
		length = 0 // no body, whatever the headers say
	}
	if length < 0 {
		return 0, false, errUnreadable
	}
	_, err = c.reader.Discard(length)
	return status, closing, err
}

// send takes jobs one at a time and sends each on its connection, dialled before the first job
// comes and again after an error or a server's close. A request whose connection fails is
// counted as an error and not sent again: the server may have placed its order.
func send(address string, jobs <-chan job, inFlight *atomic.Int64, into *tally, dialled *sync.WaitGroup) {
	c, _ := dial(address) // on failure, dialled again for the first job, which counts the error
	dialled.Done()
	for j := range jobs {
		var err error
		if c == nil {
			c, err = dial(address)
		}
		if err == nil {
			var status int
			var closing bool
			status, closing, err = c.roundTrip(j.request)
			if err == nil {
				into.latencies = append(into.latencies, time.Since(j.scheduled))
				into.statuses[status]++
				if closing {
					c.conn.Close()
					c = nil
				}
			}
		}
		if err != nil {
			into.errors++
			if into.firstError == nil {
				into.firstError = err
			}
			if c != nil {
				c.conn.Close()
				c = nil
			}
		}
		inFlight.Add(-1)
	}
	if c != nil {
		c.conn.Close()
	}
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

func main() {
	target := flag.String("url", "http://127.0.0.1:8000/orders", "target URL (http only)")
	bodiesPath := flag.String("bodies", "", "file with one JSON request body per line")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	connections := flag.Int("connections", 64, "keep-alive connections, each one request at a time")
	limit := flag.Int("in-flight", 512, "most requests queued or on the wire; past it a scheduled request is dropped")
	keyShare := flag.Float64("idempotency-share", 0, "share of requests (0-1) sent with a new Idempotency-Key")
	flag.Parse()
	if *keyShare < 0 || *keyShare > 1 {
		fmt.Fprintln(os.Stderr, "ratedriver: -idempotency-share must be between 0 and 1")
		os.Exit(2)
	}
	if *rate <= 0 || *connections < 1 || *limit < 1 {
		fmt.Fprintln(os.Stderr, "ratedriver: -rate, -connections and -in-flight must be positive")
		os.Exit(2)
	}
	parsed, err := url.Parse(*target)
	if err != nil || parsed.Scheme != "http" || parsed.Port() == "" {
		fmt.Fprintln(os.Stderr, "ratedriver: -url must be http://host:port/path:", err)
		os.Exit(2)
	}
	bodies, err := readBodies(*bodiesPath)
	if err != nil || len(bodies) == 0 {
		fmt.Fprintln(os.Stderr, "ratedriver: need -bodies with at least one line:", err)
		os.Exit(2)
	}
	// Go code on one thread: the scheduler and the connections wait in one poller, and no wake-up
	// passes between threads.
	runtime.GOMAXPROCS(1)
	run := rand.Uint64() // this run's keys differ from every other run's
	heads := make([][]byte, len(bodies))
	plain := make([][]byte, len(bodies)) // the requests without a key, built once
	for i, body := range bodies {
		heads[i] = requestHead(parsed, len(body))
		plain[i] = request(heads[i], "", body)
	}

	var inFlight atomic.Int64
	jobs := make(chan job, *limit)
	tallies := make([]tally, *connections)
	expected := int(*rate*duration.Seconds()) / *connections + 1
	var done, dialled sync.WaitGroup
	for i := range tallies {
		tallies[i] = tally{latencies: make([]time.Duration, 0, expected), statuses: map[int]int64{}}
		done.Add(1)
		dialled.Add(1)
		go func(into *tally) {
			defer done.Done()
			send(parsed.Host, jobs, &inFlight, into, &dialled)
		}(&tallies[i])
	}
	dialled.Wait() // the schedule starts on open connections, as wrk's does

	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now()
	end := start.Add(*duration)
	share := *keyShare
	var sent, dropped int64
	for ; ; sent++ {
		scheduled := start.Add(time.Duration(sent) * interval)
		if !scheduled.Before(end) {
			break
		}
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		}
		if inFlight.Load() >= int64(*limit) {
			dropped++
			continue
		}
		i := sent % int64(len(bodies))
		next := plain[i]
		// Request n carries a key when floor((n+1) x share) passes floor(n x share): exactly
		// floor(N x share) of N requests, spread evenly.
		if int64(float64(sent+1)*share) > int64(float64(sent)*share) {
			key := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(run>>32), uint16(run>>16),
				uint16(run), uint16(sent>>48), sent&0xffffffffffff)
			next = request(heads[i], key, bodies[i])
		}
		inFlight.Add(1)
		jobs <- job{scheduled, next}
	}
	close(jobs)
	done.Wait()
	elapsed := time.Since(start).Seconds()

	var latencies []time.Duration
	statuses := map[int]int64{}
	var failed int64
	var firstError error
	for _, seen := range tallies {
		latencies = append(latencies, seen.latencies...)
		for status, n := range seen.statuses {
			statuses[status] += n
		}
		failed += seen.errors
		if firstError == nil {
			firstError = seen.firstError
		}
	}
	if firstError != nil { // errors are counted in the report; one cause, so that they are not silent
		fmt.Fprintf(os.Stderr, "ratedriver: %d requests without an answer, e.g.: %v\n", failed, firstError)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	out := result{
		TargetRate:   *rate,
		AchievedRate: float64(len(latencies)) / elapsed,
		Sent:         sent,
		Completed:    int64(len(latencies)),
		Errors:       failed,
		Dropped:      dropped,
		StatusCounts: statuses,
		LatencyMs: map[string]float64{
			"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
			"p99": percentile(latencies, 99), "p99.9": percentile(latencies, 99.9),
			"max": percentile(latencies, 100),
		},
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
