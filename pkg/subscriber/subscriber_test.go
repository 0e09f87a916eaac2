package subscriber_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

const doc = `{"v":1,"id":"e1"}`

// envelope is a delivery as daprd posts it, with attrs (`"data":...` or `"data_base64":...`)
// in place of the data.
func envelope(attrs string) string {
	s := `{"specversion":"1.0","id":"ce-1","source":"order","type":"com.dapr.event.sent","topic":"order.paid","pubsubname":"pubsub","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"`
	if attrs != "" {
		s += "," + attrs
	}
	return s + "}"
}

// sized is an envelope of n bytes, its data a JSON string.
func sized(n int) string {
	return envelope(`"data":"` + strings.Repeat("x", n-len(envelope(`"data":""`))) + `"`)
}

// oversize is an envelope one byte longer than httpjson.MaxBody.
func oversize() string { return sized(httpjson.MaxBody + 1) }

func post(body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	return req
}

func TestPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		event   subscriber.Event
		want    string
		wantErr bool
		noData  bool
	}{
		{name: "data as JSON", event: subscriber.Event{Data: json.RawMessage(doc)}, want: doc},
		{name: "data as a JSON array", event: subscriber.Event{Data: json.RawMessage(`[1,2]`)}, want: `[1,2]`},
		{name: "data as a JSON string", event: subscriber.Event{Data: json.RawMessage(fmt.Sprintf("%q", doc))}, want: doc},
		{name: "data_base64", event: subscriber.Event{DataBase64: base64.StdEncoding.EncodeToString([]byte(doc))}, want: doc},
		{name: "data_base64 wins over data", event: subscriber.Event{Data: json.RawMessage(`{}`), DataBase64: base64.StdEncoding.EncodeToString([]byte(doc))}, want: doc},
		{name: "data_base64 of bytes that are not JSON", event: subscriber.Event{DataBase64: base64.StdEncoding.EncodeToString([]byte("\x00raw"))}, want: "\x00raw"},
		{name: "bad base64", event: subscriber.Event{DataBase64: "not base64!"}, wantErr: true},
		{name: "bad JSON string", event: subscriber.Event{Data: json.RawMessage(`"unterminated`)}, wantErr: true},
		{name: "no data", event: subscriber.Event{ID: "x"}, wantErr: true, noData: true},
		{name: "null data", event: subscriber.Event{Data: json.RawMessage(`null`)}, wantErr: true, noData: true},
		{name: "blank data", event: subscriber.Event{Data: json.RawMessage(" \n")}, wantErr: true, noData: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.event.Payload()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Payload() error = %v, want error %t", err, tt.wantErr)
			}
			if errors.Is(err, subscriber.ErrNoData) != tt.noData {
				t.Errorf("Payload() error = %v, want ErrNoData %t", err, tt.noData)
			}
			if string(got) != tt.want {
				t.Errorf("Payload() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		want        subscriber.Event
		wantErr     bool
		wantTooLong bool
	}{
		{name: "envelope with attributes it does not read", body: envelope(`"data":` + doc),
			want: subscriber.Event{ID: "ce-1", Topic: "order.paid", PubSub: "pubsub", Data: json.RawMessage(doc)}},
		{name: "binary data", body: envelope(`"data_base64":"AAE="`),
			want: subscriber.Event{ID: "ce-1", Topic: "order.paid", PubSub: "pubsub", DataBase64: "AAE="}},
		{name: "largest body", body: sized(httpjson.MaxBody),
			want: subscriber.Event{ID: "ce-1", Topic: "order.paid", PubSub: "pubsub", Data: json.RawMessage(`"` + strings.Repeat("x", httpjson.MaxBody-len(envelope(`"data":""`))) + `"`)}},
		{name: "garbage", body: "not json", wantErr: true},
		{name: "empty body", body: "", wantErr: true},
		{name: "wrong attribute type", body: `{"id":7}`, wantErr: true},
		{name: "oversize body", body: oversize(), wantErr: true, wantTooLong: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := subscriber.Decode(httptest.NewRecorder(), post(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Decode() error = %v, want error %t", err, tt.wantErr)
			}
			var tooLong *http.MaxBytesError
			if errors.As(err, &tooLong) != tt.wantTooLong {
				t.Errorf("Decode() error = %v, want *http.MaxBytesError %t", err, tt.wantTooLong)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRaw(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    subscriber.Event
		wantErr bool
	}{
		{name: "raw delivery", body: envelope(`"data_base64":"AAE="`),
			want: subscriber.Event{ID: "ce-1", Topic: "order.paid", PubSub: "pubsub", DataBase64: "AAE="}},
		{name: "garbage", body: "not json", wantErr: true},
		{name: "trailing data", body: `{"id":"x"} {}`, wantErr: true},
		{name: "oversize body", body: oversize(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, body, err := subscriber.DecodeRaw(httptest.NewRecorder(), post(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeRaw() error = %v, want error %t", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeRaw() (-want +got):\n%s", diff)
			}
			if !tt.wantErr && string(body) != tt.body {
				t.Errorf("DecodeRaw() body = %q, want the delivered %q", body, tt.body)
			}
		})
	}
}

func TestAnswer(t *testing.T) {
	t.Parallel()
	for _, status := range []subscriber.Status{subscriber.Success, subscriber.Retry, subscriber.Drop} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			subscriber.Answer(rec, status)
			if rec.Code != http.StatusOK {
				t.Errorf("code = %d, want 200", rec.Code)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got, want := rec.Body.String(), `{"status":"`+string(status)+`"}`+"\n"; got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
		})
	}
}

type payload struct {
	V  int    `json:"v"`
	ID string `json:"id"`
}

func decodePayload(b []byte) (payload, error) {
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return payload{}, err
	}
	if p.V != 1 {
		return payload{}, fmt.Errorf("unknown version %d", p.V)
	}
	return p, nil
}

func TestHandler(t *testing.T) {
	t.Parallel()
	errOutage := errors.New("state store down")
	tests := []struct {
		name      string
		body      string
		handleErr error
		want      subscriber.Status
		wantGot   []payload
	}{
		{name: "data as JSON", body: envelope(`"data":` + doc), want: subscriber.Success, wantGot: []payload{{V: 1, ID: "e1"}}},
		{name: "data as a JSON string", body: envelope(`"data":` + fmt.Sprintf("%q", doc)), want: subscriber.Success, wantGot: []payload{{V: 1, ID: "e1"}}},
		{name: "data_base64", body: envelope(`"data_base64":"` + base64.StdEncoding.EncodeToString([]byte(doc)) + `"`), want: subscriber.Success, wantGot: []payload{{V: 1, ID: "e1"}}},
		{name: "transient error is retried", body: envelope(`"data":` + doc), handleErr: errOutage, want: subscriber.Retry, wantGot: []payload{{V: 1, ID: "e1"}}},
		{name: "payload the decoder refuses is dropped", body: envelope(`"data":{"v":9}`), want: subscriber.Drop},
		{name: "null data is dropped", body: envelope(`"data":null`), want: subscriber.Drop},
		{name: "no data is dropped", body: envelope(""), want: subscriber.Drop},
		{name: "bad base64 is dropped", body: envelope(`"data_base64":"%%%"`), want: subscriber.Drop},
		{name: "garbage is dropped", body: "not json", want: subscriber.Drop},
		{name: "oversize body is dropped", body: oversize(), want: subscriber.Drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []payload
			h := subscriber.Handler(nil, decodePayload, func(_ context.Context, p payload) error {
				got = append(got, p)
				return tt.handleErr
			})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, post(tt.body))
			if rec.Code != http.StatusOK {
				t.Fatalf("code = %d, want 200: daprd must always read a status", rec.Code)
			}
			var out struct{ Status subscriber.Status }
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("decode answer %q: %v", rec.Body.String(), err)
			}
			if out.Status != tt.want {
				t.Errorf("status = %q, want %q", out.Status, tt.want)
			}
			if diff := cmp.Diff(tt.wantGot, got); diff != "" {
				t.Errorf("handled (-want +got):\n%s", diff)
			}
		})
	}
}

// A bulk delivery (a subscription with bulkSubscribe enabled: daprd posts many events in one
// call) is answered per entry: SUCCESS for each handled event, RETRY for one whose handling
// failed, DROP for one that cannot be decoded; every event is handled once.
func TestHandlerBulk(t *testing.T) {
	t.Parallel()
	var seen []string
	decode := func(b []byte) (string, error) {
		var v struct{ ID string }
		if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
			return "", fmt.Errorf("bad payload %s", b)
		}
		return v.ID, nil
	}
	h := subscriber.Handler(nil, decode, func(_ context.Context, id string) error {
		seen = append(seen, id)
		if id == "e2" {
			return errors.New("store down")
		}
		return nil
	})
	body := `{"id":"b1","topic":"notify.live.order","pubsubname":"pubsub-broadcast","type":"com.dapr.event.sent","metadata":{},"entries":[` +
		`{"entryId":"1","event":` + envelope(`"data":{"v":1,"id":"e1"}`) + `,"contentType":"application/cloudevents+json","metadata":{}},` +
		`{"entryId":"2","event":` + envelope(`"data":{"v":1,"id":"e2"}`) + `,"contentType":"application/cloudevents+json","metadata":{}},` +
		`{"entryId":"3","event":` + envelope(`"data":"not json"`) + `,"contentType":"application/cloudevents+json","metadata":{}}]}`
	w := httptest.NewRecorder()

	h(w, post(body))

	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	var got struct {
		Statuses []struct{ EntryID, Status string } `json:"statuses"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	want := []struct{ EntryID, Status string }{{"1", "SUCCESS"}, {"2", "RETRY"}, {"3", "DROP"}}
	if diff := cmp.Diff(got.Statuses, want); diff != "" {
		t.Errorf("statuses (-got +want):\n%s\nanswer %s", diff, w.Body)
	}
	if diff := cmp.Diff(seen, []string{"e1", "e2"}); diff != "" {
		t.Errorf("handled (-got +want):\n%s", diff)
	}
}
