package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// Keys of the baseline in its Redis DB, all under one prefix (KeyPrefix). The harness seeds
// deals and stock with the same functions and reads them back for its invariant checks.
const (
	KeyPrefix = "baseline:"
)

// StockKey holds the units left of a deal (an integer).
func StockKey(dealID string) string { return KeyPrefix + "stock:" + dealID }

// DealKey holds a deal as JSON.
func DealKey(dealID string) string { return KeyPrefix + "deal:" + dealID }

// OrderKey holds an order as JSON.
func OrderKey(id string) string { return KeyPrefix + "order:" + id }

// takeScript decrements the stock only when it covers the quantity: the hot-key decrement of
// the seed design. -1: no such deal, -2: sold out, else the units left.
var takeScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if not v then return -1 end
local left = tonumber(v)
local qty = tonumber(ARGV[1])
if left < qty then return -2 end
return redis.call("DECRBY", KEYS[1], qty)`)

// TakeScript is the Lua stock script; the harness's in-process baseline (a) runs it too.
func TakeScript() *redis.Script { return takeScript }

// RedisStock implements Stock with the Lua script.
type RedisStock struct{ R *redis.Client }

// Take implements Stock.
func (s RedisStock) Take(ctx context.Context, dealID string, qty int) error {
	n, err := takeScript.Run(ctx, s.R, []string{StockKey(dealID)}, qty).Int64()
	switch {
	case err != nil:
		return err
	case n == -1:
		return ErrNoDeal
	case n == -2:
		return ErrSoldOut
	}
	return nil
}

// Available implements Stock.
func (s RedisStock) Available(ctx context.Context, dealID string) (int64, error) {
	n, err := s.R.Get(ctx, StockKey(dealID)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, ErrNoDeal
	}
	return n, err
}

// RedisOrders implements Orders.
type RedisOrders struct{ R *redis.Client }

// Save implements Orders.
func (s RedisOrders) Save(ctx context.Context, o Order) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return s.R.Set(ctx, OrderKey(o.ID), data, 0).Err()
}

// Deal implements Orders.
func (s RedisOrders) Deal(ctx context.Context, dealID string) (Deal, error) {
	data, err := s.R.Get(ctx, DealKey(dealID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Deal{}, ErrNoDeal
	}
	if err != nil {
		return Deal{}, err
	}
	var d Deal
	return d, json.Unmarshal(data, &d)
}

// RateLimiter implements Limiter with redis_rate, as the gateway limits.
type RateLimiter struct {
	L      *redis_rate.Limiter
	Prefix string
	Limit  redis_rate.Limit
}

// Allow implements Limiter.
func (l RateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	if l.Limit.Rate <= 0 {
		return true, 0, nil
	}
	res, err := l.L.Allow(ctx, l.Prefix+key, l.Limit)
	if err != nil {
		return true, 0, err
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// Exchange and Queue are the baseline's durable fanout exchange and the queue bound to it, so
// every confirmed publish is a persisted message, as a durable order.created would be.
const (
	Exchange = "baseline.order.created"
	Queue    = "baseline.order.created.q"
)

// AMQPPublisher publishes persistent messages with publisher confirms over a few channels,
// many messages in flight per channel (deferred confirmations), waiting for each one's ack.
type AMQPPublisher struct {
	conn  *amqp.Connection
	chans []*amqp.Channel
	next  atomic.Uint64
}

// NewAMQPPublisher connects, declares the exchange and queue, and opens n confirming channels.
func NewAMQPPublisher(url string, n int) (*AMQPPublisher, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("amqp dial: %w", err)
	}
	p := &AMQPPublisher{conn: conn}
	setup, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := setup.ExchangeDeclare(Exchange, "fanout", true, false, false, false, nil); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := setup.QueueDeclare(Queue, true, false, false, false, nil); err != nil {
		conn.Close()
		return nil, err
	}
	if err := setup.QueueBind(Queue, "", Exchange, false, nil); err != nil {
		conn.Close()
		return nil, err
	}
	_ = setup.Close()
	for range max(n, 1) {
		ch, err := conn.Channel()
		if err != nil {
			conn.Close()
			return nil, err
		}
		if err := ch.Confirm(false); err != nil {
			conn.Close()
			return nil, err
		}
		p.chans = append(p.chans, ch)
	}
	return p, nil
}

// Publish implements Publisher.
func (p *AMQPPublisher) Publish(ctx context.Context, body []byte) error {
	ch := p.chans[p.next.Add(1)%uint64(len(p.chans))]
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, Exchange, "", false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body,
	})
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("broker nacked the message")
	}
	return nil
}

// Close closes the connection.
func (p *AMQPPublisher) Close() error { return p.conn.Close() }
