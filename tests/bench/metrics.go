package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// series is one counter (or a histogram's _sum or _count) of a Prometheus scrape.
type series struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// scrape is a flattened /metrics answer: counters, untyped values, and histograms and
// summaries as <name>_sum and <name>_count, keyed by name and labels.
type scrape map[string]series

func seriesKey(name string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(&b, ",%s=%q", k, labels[k])
	}
	return b.String()
}

// parseScrape parses the Prometheus text format.
func parseScrape(r io.Reader) (scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := scrape{}
	add := func(name string, labels map[string]string, v float64) {
		out[seriesKey(name, labels)] = series{Name: name, Labels: labels, Value: v}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, labels, m.GetCounter().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, labels, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				add(name+"_sum", labels, m.GetHistogram().GetSampleSum())
				add(name+"_count", labels, float64(m.GetHistogram().GetSampleCount()))
			case dto.MetricType_SUMMARY:
				add(name+"_sum", labels, m.GetSummary().GetSampleSum())
				add(name+"_count", labels, float64(m.GetSummary().GetSampleCount()))
			}
		}
	}
	return out, nil
}

// fetchScrape GETs and parses a /metrics endpoint.
func fetchScrape(ctx context.Context, hc *http.Client, url string) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return parseScrape(resp.Body)
}

// delta is after minus before, per series (a series new in after counts from zero).
func delta(before, after scrape) scrape {
	out := scrape{}
	for k, a := range after {
		a.Value -= before[k].Value
		out[k] = a
	}
	return out
}

// sum adds the series whose name is name and whose labels include every pair of match.
func (s scrape) sum(name string, match map[string]string) float64 {
	var total float64
	for _, x := range s {
		if x.Name != name || !labelsMatch(x.Labels, match) {
			continue
		}
		total += x.Value
	}
	return total
}

// sumBy adds the series of name grouped by the value of label.
func (s scrape) sumBy(name, label string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s {
		if x.Name != name || !labelsMatch(x.Labels, match) {
			continue
		}
		out[x.Labels[label]] += x.Value
	}
	return out
}

// names returns the distinct series names that satisfy keep, sorted.
func (s scrape) names(keep func(string) bool) []string {
	seen := map[string]bool{}
	for _, x := range s {
		if keep(x.Name) {
			seen[x.Name] = true
		}
	}
	out := slices.Collect(maps.Keys(seen))
	sort.Strings(out)
	return out
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// Sidecar metrics of Dapr 1.16 (daprd's /metrics, OpenCensus names under "dapr_"): state
// store operations by "operation" (get, set, delete, bulk_get, bulk_delete, transaction,
// query) and pub/sub publishes, each a count and a latency histogram in milliseconds.
const (
	mStateCount       = "dapr_component_state_count"
	mStateLatency     = "dapr_component_state_latencies"
	mEgressCount      = "dapr_component_pubsub_egress_count"
	mEgressLatency    = "dapr_component_pubsub_egress_latencies"
	mBulkEgressEvents = "dapr_component_pubsub_egress_bulk_event_count"
	mBulkEgressLat    = "dapr_component_pubsub_egress_bulk_latencies"
)

// stateWriteOps are the state operations that write.
var stateWriteOps = []string{"set", "delete", "transaction", "bulk_delete", "bulk_set"}

// SidecarStats is what one sidecar's metrics showed over a phase.
type SidecarStats struct {
	StateOps        map[string]float64 `json:"state_ops"`         // by operation
	StateLatencyMS  map[string]float64 `json:"state_latency_ms"`  // mean, by operation
	StateFailures   float64            `json:"state_failures"`    // success="false" (ETag conflicts among them)
	StateWrites     float64            `json:"state_writes"`      // set, delete, transaction, bulk ops
	StateReads      float64            `json:"state_reads"`       // every other operation: get, bulk_get, query
	Publishes       float64            `json:"publishes"`         // single and bulk events
	EgressLatencyMS float64            `json:"egress_latency_ms"` // mean publish latency
	PublishFailures float64            `json:"publish_failures"`
}

func sidecarStats(d scrape) SidecarStats {
	st := SidecarStats{StateOps: d.sumBy(mStateCount, "operation", nil), StateLatencyMS: map[string]float64{}}
	sums := d.sumBy(mStateLatency+"_sum", "operation", nil)
	counts := d.sumBy(mStateLatency+"_count", "operation", nil)
	for op, n := range counts {
		if n > 0 {
			st.StateLatencyMS[op] = sums[op] / n
		}
	}
	for op, n := range st.StateOps {
		if n == 0 {
			delete(st.StateOps, op)
		}
	}
	st.StateFailures = d.sum(mStateCount, map[string]string{"success": "false"})
	for op, n := range st.StateOps {
		if slices.Contains(stateWriteOps, op) {
			st.StateWrites += n
		} else {
			st.StateReads += n
		}
	}
	single := d.sum(mEgressCount, nil)
	st.Publishes = single + d.sum(mBulkEgressEvents, nil)
	st.PublishFailures = d.sum(mEgressCount, map[string]string{"success": "false"})
	if n := d.sum(mEgressLatency+"_count", nil) + d.sum(mBulkEgressLat+"_count", nil); n > 0 {
		st.EgressLatencyMS = (d.sum(mEgressLatency+"_sum", nil) + d.sum(mBulkEgressLat+"_sum", nil)) / n
	}
	return st
}

// AppStats is what one app's own metrics showed over a phase: every counter whose name
// speaks of conflicts, and the mean of every histogram whose name speaks of batches (the
// inventory's inventory_cas_conflicts_total and inventory_batch_size today; whatever the
// apps add under such names later is picked up the same way).
type AppStats struct {
	Conflicts map[string]float64 `json:"conflicts,omitempty"`
	// ReadCache is the gateway's read cache counters (gateway_read_cache_*), by name and,
	// where they have one, outcome or reason: "loads.not_found", "rebuilds.ok", "hits".
	ReadCache  map[string]float64 `json:"read_cache,omitempty"`
	BatchMeans map[string]float64 `json:"batch_means,omitempty"`
	BatchCount map[string]float64 `json:"batch_count,omitempty"`
}

func appStats(d scrape) AppStats {
	st := AppStats{Conflicts: map[string]float64{}, BatchMeans: map[string]float64{}, BatchCount: map[string]float64{}, ReadCache: map[string]float64{}}
	const rc = "gateway_read_cache_"
	for _, n := range d.names(func(n string) bool { return strings.HasPrefix(n, rc) && strings.HasSuffix(n, "_total") }) {
		name := strings.TrimSuffix(strings.TrimPrefix(n, rc), "_total")
		split := false
		for _, label := range []string{"outcome", "reason"} {
			for v, x := range d.sumBy(n, label, nil) {
				if v != "" {
					split = true
					if x > 0 {
						st.ReadCache[name+"."+v] += x
					}
				}
			}
		}
		if v := d.sum(n, nil); !split && v > 0 {
			st.ReadCache[name] = v
		}
	}
	for _, n := range d.names(func(n string) bool { return strings.Contains(n, "conflict") && !strings.HasSuffix(n, "_sum") }) {
		if v := d.sum(n, nil); v > 0 {
			st.Conflicts[n] = v
		}
	}
	for _, n := range d.names(func(n string) bool { return strings.Contains(n, "batch") && strings.HasSuffix(n, "_count") }) {
		base := strings.TrimSuffix(n, "_count")
		if c := d.sum(n, nil); c > 0 {
			st.BatchCount[base] = c
			st.BatchMeans[base] = d.sum(base+"_sum", nil) / c
		}
	}
	return st
}
