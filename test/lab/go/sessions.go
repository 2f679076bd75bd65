package main

// Session expiry on demand (POST /sessions/expire): every logged-in session ends at once,
// as if vCenter's idle timeout had passed, so tests of re-login need no waiting. The lab
// logs in itself through the real API to find and terminate the sessions.

import (
	"context"
	"net/url"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
)

func (l *lab) expireSessions() (int, error) {
	ctx := context.Background()
	u := *l.server.URL
	u.User = url.UserPassword(l.info.Username, l.info.Password)
	client, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		return 0, err
	}
	defer func() { _ = client.Logout(ctx) }()
	var sm mo.SessionManager
	pc := property.DefaultCollector(client.Client)
	if err := pc.RetrieveOne(ctx, *client.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		return 0, err
	}
	var ids []string
	for _, s := range sm.SessionList {
		if sm.CurrentSession == nil || s.Key != sm.CurrentSession.Key {
			ids = append(ids, s.Key)
		}
	}
	if len(ids) > 0 {
		if err := client.SessionManager.TerminateSession(ctx, ids); err != nil {
			return 0, err
		}
	}
	l.sessions.forgetAll()
	return len(ids), nil
}
