// Package httpapi exposes notify: the user's inbox (called by the gateway through Dapr service
// invocation, the user forwarded in identity headers), the endpoints the sidecar delivers
// subscribed events and dead letters to (components/subscriptions-notify.yaml), and the
// dead-letter admin routes (list, replay one, replay a topic), which the gateway forwards to
// admins only and which check the admin role again here.
//
// notify serves no live streams: daprd buffers a streamed invocation response until it ends,
// so the gateway replicas hold the SSE connections and are fed over the broadcast component,
// to which notify relays every event after writing the inboxes (pkg/live).
package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

// Routes of the subscription endpoints; components/subscriptions-notify.yaml points here and a
// test checks that every route it names is mounted (an unmounted route answers 404, which Dapr
// treats as "drop silently": the events would be lost without reaching the dead-letter topic).
const (
	RouteOrderEvents = "/events/order"
	RouteGroupEvents = "/events/group"
	RouteDeadLetters = "/dead-letters"
)

// Options tune the handlers; zero values take the defaults.
type Options struct {
	Log *slog.Logger
}

type handlers struct {
	svc  *notification.Service
	dead *deadletter.Keeper
	log  *slog.Logger
}

// Routes mounts the notify routes on r. Every route is internal: the router checks the app API
// token, so only notify's own sidecar reaches them.
func Routes(r chi.Router, svc *notification.Service, dead *deadletter.Keeper, opts Options) {
	h := &handlers{svc: svc, dead: dead, log: opts.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}

	r.With(identity.Require).Get("/me/notifications", h.inbox)

	r.Post(RouteOrderEvents, subscriber.Handler(h.log, notification.DecodeOrder, h.record))
	r.Post(RouteGroupEvents, subscriber.Handler(h.log, notification.DecodeGroup, h.record))
	r.Post(RouteDeadLetters, h.keepDeadLetter)

	admin := r.With(identity.RequireAdmin)
	admin.Get("/admin/dead-letters", h.serve(h.listDeadLetters))
	admin.Post("/admin/dead-letters/replay", h.serve(h.replayTopic))
	admin.Post("/admin/dead-letters/{id}/replay", h.serve(h.replayLetter))
}

// serve adapts an admin handler that returns its answer: the value as JSON with status, or the
// error as a problem document (logged when it is a 5xx).
func (h *handlers) serve(fn func(*http.Request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		status, v, err := fn(req)
		if err != nil {
			err = deadLetterProblem(err)
			if problem.CodeOf(err).Status() >= 500 {
				h.log.ErrorContext(req.Context(), "admin_request_failed", slog.String("path", req.URL.Path),
					slog.String("error", err.Error()))
			}
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, status, v)
	}
}

// deadLetterProblem maps the keeper's errors to problem codes; a problem passes as it is.
func deadLetterProblem(err error) error {
	var p *problem.Error
	switch {
	case errors.As(err, &p):
		return err
	case errors.Is(err, deadletter.ErrInvalidTopic):
		return errors.Join(problem.New(problem.CodeValidation, err.Error()), err)
	case errors.Is(err, deadletter.ErrNotFound):
		return errors.Join(problem.New(problem.CodeNotFound, "no dead letter with that id"), err)
	case errors.Is(err, deadletter.ErrAmbiguous):
		return errors.Join(problem.New(problem.CodeConflict,
			`letters with that id are kept on several topics: name one with the query parameter "topic"`), err)
	case errors.Is(err, deadletter.ErrNotReplayable):
		return errors.Join(problem.New(problem.CodeInvalidState,
			"the letter holds no CloudEvent to replay (the message was not one, or was kept before replay existed)"), err)
	case errors.Is(err, deadletter.ErrPublish):
		return errors.Join(problem.New(problem.CodeUnavailable, "publishing the replay failed; the letter stays pending, try again"), err)
	default:
		return err
	}
}

func (h *handlers) inbox(w http.ResponseWriter, req *http.Request) {
	u, _ := identity.FromContext(req.Context())
	items, err := h.svc.Inbox(req.Context(), u.ID)
	if err != nil {
		problem.Write(w, req, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"items": items})
}

// listDeadLetters answers GET /admin/dead-letters[?topic=<topic>] with the letters of that
// dead-letter topic ("order.created.dead"; the original topic "order.created" names it too),
// or of every topic notify keeps: {"items":[{topic,id,data,event,received_at,status,...}]},
// newest first.
func (h *handlers) listDeadLetters(req *http.Request) (int, any, error) {
	items, err := h.dead.List(req.Context(), req.URL.Query().Get("topic"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, deadletter.List{Items: items}, nil
}

// replayLetter answers POST /admin/dead-letters/{id}/replay[?topic=<topic>]: 200 with the
// letter, now marked replayed, once its original event is published again.
func (h *handlers) replayLetter(req *http.Request) (int, any, error) {
	l, err := h.dead.Replay(req.Context(), chi.URLParam(req, "id"), req.URL.Query().Get("topic"))
	if err != nil {
		return 0, nil, err
	}
	h.log.InfoContext(req.Context(), "dead_letter_replayed", slog.String("topic", l.Topic),
		slog.String("cloudevent_id", l.ID), slog.String("by", adminName(req)))
	return http.StatusOK, l, nil
}

// replayTopic answers POST /admin/dead-letters/replay?topic=<topic>[&include_replayed=true]:
// 200 with the counts (deadletter.ReplayResult). A publish that fails stops the run: 503, and
// the letters not yet replayed stay pending for the next run.
func (h *handlers) replayTopic(req *http.Request) (int, any, error) {
	q := req.URL.Query()
	topic := q.Get("topic")
	if topic == "" {
		return 0, nil, problem.Invalid(problem.FieldError{Field: "topic",
			Reason: "required: the dead-letter topic (order.created.dead) or its original topic (order.created)"})
	}
	var include bool
	switch v := q.Get("include_replayed"); v {
	case "", "false":
	case "true":
		include = true
	default:
		return 0, nil, problem.Invalid(problem.FieldError{Field: "include_replayed", Reason: `must be "true" or "false"`})
	}
	res, err := h.dead.ReplayTopic(req.Context(), topic, include)
	if err != nil && !errors.Is(err, deadletter.ErrPublish) {
		return 0, nil, err
	}
	h.log.InfoContext(req.Context(), "dead_letters_replayed", slog.String("topic", res.Topic),
		slog.Int("replayed", res.Replayed), slog.Int("already_replayed", res.AlreadyReplayed),
		slog.Int("not_replayable", res.NotReplayable), slog.String("by", adminName(req)))
	if errors.Is(err, deadletter.ErrPublish) {
		return 0, nil, errors.Join(problem.Errorf(problem.CodeUnavailable,
			"replayed %d letters of %s, then a publish failed; the rest stay pending: run the replay again", res.Replayed, res.Topic), err)
	}
	return http.StatusOK, res, nil
}

func adminName(req *http.Request) string {
	u, _ := identity.FromContext(req.Context())
	return u.Username
}

// identity.Require admits calls that carry the user the gateway forwarded.
