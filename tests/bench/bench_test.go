package main

import (
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/groupbuy/groupbuy/pkg/devstack"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/tests/testinfra"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{name: "plain", stat: "1234 (daprd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0",
			want: 3 * time.Second},
		{name: "command with spaces and parens", stat: "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0",
			want: 100 * time.Millisecond},
		{name: "short", stat: "1 (x) S 1 2", wantErr: true},
		{name: "no command", stat: "garbage", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatCPU(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %t", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("cpu = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	t.Parallel()
	status := "Name:\tdaprd\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"
	if got, want := parseStatusKB(status, "VmHWM"), int64(51200); got != want {
		t.Errorf("VmHWM = %d, want %d", got, want)
	}
	if got := parseStatusKB(status, "VmSwap"); got != 0 {
		t.Errorf("missing field = %d, want 0", got)
	}
}

func TestListeningInodes(t *testing.T) {
	t.Parallel()
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:18EB 0100007F:C350 01 00000000:00000000 00:00000000 00000000   999        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
`)
	if diff := cmp.Diff([]string{"4242"}, listeningInodes(table, 6379)); diff != "" {
		t.Errorf("redis port (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"5151"}, listeningInodes(table, 5672)); diff != "" {
		t.Errorf("amqp port (-want +got):\n%s", diff)
	}
	if got := listeningInodes(table, 80); len(got) != 0 {
		t.Errorf("port 80 = %v, want none", got)
	}
}

func TestCostBetween(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(100, 0)
	before := costSnapshot{at: t0, samples: map[string]procSample{
		"order": {CPU: time.Second}, "order-daprd": {CPU: 2 * time.Second}, "gone": {CPU: time.Second},
	}}
	after := costSnapshot{at: t0.Add(10 * time.Second), samples: map[string]procSample{
		"order": {CPU: 3 * time.Second, PeakRSS: 10}, "order-daprd": {CPU: 2500 * time.Millisecond, PeakRSS: 20}, "new": {CPU: time.Hour},
	}}
	want := Cost{CPUSeconds: 2.5, ByProcess: map[string]float64{"order": 2, "order-daprd": 0.5}, PeakRSSBytes: 30, WallSeconds: 10, Processes: 2}
	if diff := cmp.Diff(want, costBetween(before, after)); diff != "" {
		t.Errorf("cost (-want +got):\n%s", diff)
	}
}

func TestKeyFamily(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, want string }{
		{"inventory||stock:123", "inventory||stock:*"},
		{"inventory||stock:123:0", "inventory||stock:*:*"},
		{"order||order:42", "order||order:*"},
		{"order||idem:7:9f86d081", "order||idem:*:*"},
		{"group||GroupActor||42||group", "group||GroupActor||*||group"},
		{"baseline:order:42", "baseline:order:*"},
		{"baseline:stock:d1", "baseline:stock:*"},
		{"plain", "plain"},
	}
	for _, tt := range tests {
		if got := keyFamily(tt.key); got != tt.want {
			t.Errorf("keyFamily(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestSliceRates(t *testing.T) {
	t.Parallel()
	start := time.Unix(0, 0)
	// 20 units: the first half one per 100ms, the second half one per 200ms.
	var ends []time.Time
	at := start
	for i := range 20 {
		step := 100 * time.Millisecond
		if i >= 10 {
			step = 200 * time.Millisecond
		}
		at = at.Add(step)
		ends = append(ends, at)
	}
	// Out of order on purpose: answers arrive from many workers.
	ends[3], ends[15] = ends[15], ends[3]
	got := sliceRates(start, ends)
	if len(got) != 10 {
		t.Fatalf("%d slices, want 10", len(got))
	}
	for i, s := range got {
		want := 10.0
		if i >= 5 {
			want = 5
		}
		if s.UnitsTo-s.UnitsFrom != 2 || s.UnitsPerSec < want-0.001 || s.UnitsPerSec > want+0.001 {
			t.Errorf("slice %d = %+v, want 2 units at %.0f/s", i, s, want)
		}
	}
	if got := sliceRates(start, ends[:9]); got != nil {
		t.Errorf("9 units gave %d slices, want none", len(got))
	}
}

func TestParseScrapeAndStats(t *testing.T) {
	t.Parallel()
	before := `# TYPE dapr_component_state_count counter
dapr_component_state_count{app_id="order",component="statestore",operation="get",success="true"} 10
dapr_component_state_count{app_id="order",component="statestore",operation="set",success="true"} 5
# TYPE dapr_component_state_latencies histogram
dapr_component_state_latencies_bucket{app_id="order",operation="get",success="true",le="+Inf"} 10
dapr_component_state_latencies_sum{app_id="order",operation="get",success="true"} 20
dapr_component_state_latencies_count{app_id="order",operation="get",success="true"} 10
# TYPE dapr_component_pubsub_egress_count counter
dapr_component_pubsub_egress_count{app_id="order",success="true",topic="order.created"} 1
# TYPE dapr_component_pubsub_egress_latencies histogram
dapr_component_pubsub_egress_latencies_bucket{app_id="order",success="true",topic="order.created",le="+Inf"} 1
dapr_component_pubsub_egress_latencies_sum{app_id="order",success="true",topic="order.created"} 100
dapr_component_pubsub_egress_latencies_count{app_id="order",success="true",topic="order.created"} 1
`
	after := `# TYPE dapr_component_state_count counter
dapr_component_state_count{app_id="order",component="statestore",operation="get",success="true"} 30
dapr_component_state_count{app_id="order",component="statestore",operation="set",success="true"} 15
dapr_component_state_count{app_id="order",component="statestore",operation="set",success="false"} 2
dapr_component_state_count{app_id="order",component="statestore",operation="delete",success="true"} 1
# TYPE dapr_component_state_latencies histogram
dapr_component_state_latencies_bucket{app_id="order",operation="get",success="true",le="+Inf"} 30
dapr_component_state_latencies_sum{app_id="order",operation="get",success="true"} 80
dapr_component_state_latencies_count{app_id="order",operation="get",success="true"} 30
# TYPE dapr_component_pubsub_egress_count counter
dapr_component_pubsub_egress_count{app_id="order",success="true",topic="order.created"} 5
# TYPE dapr_component_pubsub_egress_latencies histogram
dapr_component_pubsub_egress_latencies_bucket{app_id="order",success="true",topic="order.created",le="+Inf"} 5
dapr_component_pubsub_egress_latencies_sum{app_id="order",success="true",topic="order.created"} 500
dapr_component_pubsub_egress_latencies_count{app_id="order",success="true",topic="order.created"} 5
`
	b, err := parseScrape(strings.NewReader(before))
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseScrape(strings.NewReader(after))
	if err != nil {
		t.Fatal(err)
	}
	got := sidecarStats(delta(b, a))
	want := SidecarStats{
		StateOps:        map[string]float64{"get": 20, "set": 12, "delete": 1},
		StateLatencyMS:  map[string]float64{"get": 3},
		StateFailures:   2,
		StateWrites:     13,
		StateReads:      20,
		Publishes:       4,
		EgressLatencyMS: 100,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sidecar stats (-want +got):\n%s", diff)
	}
}

func TestAppStats(t *testing.T) {
	t.Parallel()
	before := `# TYPE inventory_cas_conflicts_total counter
inventory_cas_conflicts_total{otel_scope_name="inventory"} 3
# TYPE inventory_batch_size histogram
inventory_batch_size_bucket{le="+Inf"} 10
inventory_batch_size_sum 40
inventory_batch_size_count 10
# TYPE http_server_duration histogram
http_server_duration_bucket{le="+Inf"} 5
http_server_duration_sum 1
http_server_duration_count 5
# TYPE gateway_read_cache_loads_total counter
gateway_read_cache_loads_total{kind="deal",outcome="found"} 3
gateway_read_cache_loads_total{kind="deal",outcome="not_found"} 1
# TYPE gateway_read_cache_hits_total counter
gateway_read_cache_hits_total 10
`
	after := `# TYPE gateway_read_cache_loads_total counter
gateway_read_cache_loads_total{kind="deal",outcome="found"} 4
gateway_read_cache_loads_total{kind="product",outcome="found"} 2
gateway_read_cache_loads_total{kind="deal",outcome="not_found"} 1
# TYPE gateway_read_cache_hits_total counter
gateway_read_cache_hits_total 25
# TYPE inventory_cas_conflicts_total counter
inventory_cas_conflicts_total{otel_scope_name="inventory"} 5
# TYPE inventory_batch_size histogram
inventory_batch_size_bucket{le="+Inf"} 20
inventory_batch_size_sum 240
inventory_batch_size_count 20
# TYPE http_server_duration histogram
http_server_duration_bucket{le="+Inf"} 9
http_server_duration_sum 2
http_server_duration_count 9
`
	b, _ := parseScrape(strings.NewReader(before))
	a, _ := parseScrape(strings.NewReader(after))
	want := AppStats{
		Conflicts:  map[string]float64{"inventory_cas_conflicts_total": 2},
		ReadCache:  map[string]float64{"loads.found": 3, "hits": 15},
		BatchMeans: map[string]float64{"inventory_batch_size": 20},
		BatchCount: map[string]float64{"inventory_batch_size": 10},
	}
	if diff := cmp.Diff(want, appStats(delta(b, a))); diff != "" {
		t.Errorf("app stats (-want +got):\n%s", diff)
	}
}

func TestSustainable(t *testing.T) {
	t.Parallel()
	slo := 120 * time.Millisecond
	tests := []struct {
		name string
		s    Summary
		want bool
	}{
		{"within", Summary{Mode: "open", OfferedRate: 100, SentRate: 99, Requests: 1000, P95MS: 50}, true},
		{"slow", Summary{Mode: "open", OfferedRate: 100, SentRate: 100, Requests: 1000, P95MS: 120}, false},
		{"errors at 0.1%", Summary{Mode: "open", OfferedRate: 100, SentRate: 100, Requests: 1000, ErrorRate: 0.001, P95MS: 10}, false},
		{"could not send the rate", Summary{Mode: "open", OfferedRate: 100, SentRate: 80, Requests: 1000, P95MS: 10}, false},
		{"closed loop", Summary{Mode: "closed", Requests: 10, P95MS: 10}, true},
		{"nothing sent", Summary{Mode: "open", OfferedRate: 100}, false},
	}
	for _, tt := range tests {
		if got := tt.s.Sustainable(slo); got != tt.want {
			t.Errorf("%s: Sustainable = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestExpect(t *testing.T) {
	t.Parallel()
	soldOut := []byte(`{"status":409,"code":"sold-out"}`)
	limit := []byte(`{"status":409,"code":"purchase-limit"}`)
	tests := []struct {
		name   string
		fn     func(int, []byte) string
		status int
		body   []byte
		want   string
	}{
		{"created", expect("", http.StatusCreated), 201, []byte(`{}`), ""},
		{"sold out is an error for purchases", expect("", http.StatusCreated), 409, soldOut, "409 sold-out"},
		{"sold out expected", expect("sold-out", http.StatusConflict), 409, soldOut, ""},
		{"another 409", expect("sold-out", http.StatusConflict), 409, limit, "409 purchase-limit"},
		{"no problem body", expect("", http.StatusOK), 502, []byte("bad gateway"), "502"},
	}
	for _, tt := range tests {
		if got := tt.fn(tt.status, tt.body); got != tt.want {
			t.Errorf("%s: label %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPurchasesBudget(t *testing.T) {
	t.Parallel()
	users := []User{{ID: "u0", Token: "t0"}, {ID: "u1", Token: "t1"}}
	p := &purchases{base: "http://gw/api/v1", users: users, deals: []string{"d0", "d1"}, limit: true, prefix: "k-"}
	perDeal := map[string]map[string]int{}
	for {
		var tgt vegeta.Target
		err := p.next(&tgt)
		if errors.Is(err, errBudget) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		deal := dealOfURL(tgt.URL)
		if perDeal[deal] == nil {
			perDeal[deal] = map[string]int{}
		}
		perDeal[deal][tgt.Header.Get("Authorization")]++
	}
	want := map[string]map[string]int{
		"d0": {"Bearer t0": maxPerUser, "Bearer t1": maxPerUser},
		"d1": {"Bearer t0": maxPerUser, "Bearer t1": maxPerUser},
	}
	if diff := cmp.Diff(want, perDeal); diff != "" {
		t.Errorf("purchases per deal and user (-want +got):\n%s", diff)
	}
}

func TestRatios(t *testing.T) {
	t.Parallel()
	r := &Report{Values: map[string]float64{
		"S2.sustainable": 600, "floor.path": 1000, "S2.baseline.sustainable": 4000,
		"S3.writes_per_op": 0, "S6.p99_s": 45,
		"R.deal.okps": 3000, "R.deal.p95_ms": 25, "R.baseline.okps": 4000, "R.unknown.state_reads": 3, "R.unknown.cache_lookups": 2,
	}}
	got := map[string]Ratio{}
	for _, x := range ratios(r) {
		got[x.Name] = x
	}
	check := func(name string, measured, met bool, value float64) {
		t.Helper()
		x, ok := got[name]
		if !ok {
			t.Fatalf("no ratio %q", name)
		}
		if x.Measured != measured || x.Met != met || (measured && x.Value != value) {
			t.Errorf("%s = %+v, want measured %t met %t value %v", name, x, measured, met, value)
		}
	}
	check("S2 sustainable / sidecar floor of its path", true, true, 0.6)
	check("S2 sustainable / baseline (b) sustainable", true, false, 0.15)
	check("S3 state writes per refused purchase", true, true, 0)
	check("S6 expiry lateness p99 (s), pay_by → stock back", true, false, 45)
	check("S1 engine (1 process) / per-request Lua (a)", false, false, 0)
	check("R GET /deals/{id} with orders / baseline (b) deal read", true, true, 0.75)
	check("R GET /deals/{id} with orders: p95 (ms)", true, false, 25)
	check("R unknown ids: catalog lookups they caused (read cache's counter)", true, false, 2)
	check("R unknown ids: state reads on the gateway and catalog sidecars", true, true, 3)
	check("R GET /products/{id} / baseline (b) deal read", false, false, 0)
}

func TestSeqInURL(t *testing.T) {
	t.Parallel()
	u := withSeq("http://gw/api/v1/deals/42/orders", 17)
	if i, ok := seqOf(u); !ok || i != 17 {
		t.Errorf("seqOf(%q) = %d, %t; want 17, true", u, i, ok)
	}
	if got := dealOfURL(u); got != "42" {
		t.Errorf("dealOfURL(%q) = %q, want 42", u, got)
	}
	if _, ok := seqOf("http://gw/api/v1/deals/42"); ok {
		t.Error("seqOf found a sequence number in a URL without one")
	}
}

func TestOpenOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    vegeta.Result
		want bool
	}{
		{"no answer", vegeta.Result{Code: 0, Error: "timeout"}, true},
		{"server error", vegeta.Result{Code: 503}, true},
		{"key in use", vegeta.Result{Code: 409, Body: []byte(`{"code":"idempotency-key-in-use"}`)}, true},
		{"sold out", vegeta.Result{Code: 409, Body: []byte(`{"code":"sold-out"}`)}, false},
		{"created", vegeta.Result{Code: 201}, false},
	}
	for _, tt := range tests {
		if got := openOutcome(&tt.r); got != tt.want {
			t.Errorf("%s: openOutcome = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestHeldMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                                 string
		held1, held2, active, released, open int
		want                                 bool
	}{
		{"exact", 100, 100, 100, 0, 0, true},
		{"an active order lost its hold", 99, 99, 100, 0, 0, false},
		{"hold without an order", 101, 101, 100, 0, 0, false},
		{"extra hold explained by an open outcome", 101, 101, 100, 0, 1, true},
		{"release on its way", 100, 100, 60, 40, 0, true},
		{"released meanwhile (read before the orders)", 100, 60, 60, 40, 0, true},
		{"more held than all orders", 100, 101, 60, 40, 0, false},
		{"all released", 0, 0, 0, 40, 0, true},
	}
	for _, tt := range tests {
		if got, why := heldMatches(tt.held1, tt.held2, tt.active, tt.released, tt.open); got != tt.want {
			t.Errorf("%s: heldMatches = %t (%s), want %t", tt.name, got, why, tt.want)
		}
	}
}

func TestComponentOverridesCoverEveryRabbitMQComponent(t *testing.T) {
	infra := &testinfra.Infra{RedisAddr: "127.0.0.1:6379", RedisDB: 7, RabbitURL: "amqp://guest:guest@127.0.0.1:5672/run-vhost"}
	md, err := componentOverrides(filepath.Join("..", "..", "components"), infra)
	if err != nil {
		t.Fatal(err)
	}
	resources, err := devstack.LoadResources(filepath.Join("..", "..", "components"))
	if err != nil {
		t.Fatal(err)
	}
	rabbit := 0
	for _, r := range resources {
		if r.Kind != "Component" || !strings.HasSuffix(r.Type, ".rabbitmq") {
			continue
		}
		rabbit++
		if got := md[r.Name]["connectionString"]; got != infra.RabbitURL {
			t.Errorf("component %s (%s) connects to %q, want the run's vhost %q", r.Name, r.Type, got, infra.RabbitURL)
		}
	}
	// pubsub, pubsub-broadcast and the order app's relay components at least.
	if rabbit < 3 {
		t.Errorf("found %d RabbitMQ components in components/, want the relay components among them", rabbit)
	}
	if got := md["statestore"]; got["redisHost"] != infra.RedisAddr || got["redisDB"] != "7" {
		t.Errorf("statestore overrides %v, want the run's Redis DB", got)
	}
}

func TestUnknownIDs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	// Every id whose timestamp is odd "exists": the generator must never send one.
	exists := func(id string) bool {
		v, err := strconv.ParseInt(id, 10, 64)
		return err == nil && (v>>snowLowBits)%2 == 1
	}
	u := newUnknownIDs("http://gw/api/v1", exists)
	u.now = func() time.Time { return now }
	const n = 80_000
	seen := make(map[string]bool, n)
	kinds := map[string]int{}
	resources := map[string]int{}
	for range n {
		var tgt vegeta.Target
		if err := u.next(&tgt); err != nil {
			t.Fatal(err)
		}
		rest, ok := strings.CutPrefix(tgt.URL, "http://gw/api/v1/")
		if !ok || tgt.Method != http.MethodGet {
			t.Fatalf("request %s %s, want a GET under the gateway", tgt.Method, tgt.URL)
		}
		resource, _, _ := strings.Cut(rest, "/")
		resources[resource]++
		id := idOfURL(tgt.URL)
		if seen[id] {
			t.Fatalf("id %q sent twice", id)
		}
		seen[id] = true
		kind := idKind(id, now)
		kinds[kind]++
		if kind != "well-formed" {
			continue
		}
		if exists(id) {
			t.Errorf("id %s exists", id)
		}
		v, _ := strconv.ParseInt(id, 10, 64)
		if age := now.Sub(ids.Time(v)); age < time.Minute || age > time.Hour {
			t.Errorf("id %s is %v old, want 1 min to 1 h", id, age)
		}
	}
	want := map[string]int{"well-formed": n / 2, "letters": n / 8, "negative": n / 8, "30-digit": n / 8, "future": n / 8}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("kinds of ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"deals": n / 2, "products": n / 2}, resources); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

func TestIDKind(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	snow := func(at time.Time) string {
		return strconv.FormatInt(at.Sub(ids.Epoch).Milliseconds()<<snowLowBits|12345, 10)
	}
	tests := []struct{ id, want string }{
		{"abc", "letters"},
		{"-5", "negative"},
		{"123456789012345678901234567890", "30-digit"},
		{snow(now.Add(time.Hour)), "future"},
		{snow(now.Add(-time.Hour)), "well-formed"},
		{"12x", "other"},
	}
	for _, tt := range tests {
		if got := idKind(tt.id, now); got != tt.want {
			t.Errorf("idKind(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}
