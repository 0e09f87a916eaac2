package testinfra

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// provisionLocal claims a Redis DB and creates a vhost on the services of this machine.
func provisionLocal(ctx context.Context, opts Options, inf *Infra) error {
	claim, err := claimRedisDB(ctx, opts.RedisAddr, inf.RunID, opts.LockTTL, opts.logf)
	if err != nil {
		return err
	}
	inf.onClose("release redis db "+strconv.Itoa(claim.db), claim.release)
	inf.RedisAddr, inf.RedisDB, inf.lockKey = opts.RedisAddr, claim.db, claim.key

	admins, uri, err := brokerAdmins(opts.RabbitURL, opts.RabbitManagementURL)
	if err != nil {
		return err
	}
	vhost := vhostPrefix + inf.RunID
	admin, err := createVhost(ctx, admins, vhost, uri.Username)
	if err != nil {
		return err
	}
	inf.onClose("delete rabbitmq vhost "+vhost+" via "+admin.String(), func(ctx context.Context) error {
		return admin.delete(ctx, vhost)
	})
	inf.vhost = vhost
	opts.logf("testinfra: created vhost %s via %s", vhost, admin)

	if inf.RabbitURL, err = withVhost(opts.RabbitURL, vhost); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := waitAMQP(wctx, inf.RabbitURL); err != nil {
		return fmt.Errorf("vhost %s was created but does not accept connections: %w", vhost, err)
	}
	return nil
}
