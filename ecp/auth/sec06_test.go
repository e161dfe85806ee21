package auth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// TestSec06LoginThrottleHoldsAcrossBurstsAndReplicas: issue #11 finding 6:
// 60 concurrent wrong passwords all got 401 and never 429, and a burst of
// 39 wrong and 1 right password got 200 and reset the count. Here bursts
// go to two replicas sharing one etcd: only MaxLoginFailuresPerUser
// guesses are ever compared, everything past them is 429 with Retry-After
// (the right password too), per username and per client address, until
// the windows have passed.
func TestSec06LoginThrottleHoldsAcrossBurstsAndReplicas(t *testing.T) {
	cli := etcdtest.Client(t)
	c := &clock{t: time.Now()}
	replicas := []*replica{newReplica(t, cli, c.now), newReplica(t, cli, c.now)}
	ctx := t.Context()
	for _, u := range []string{"victim", "other"} {
		if _, err := replicas[0].store.CreateUser(ctx, u, secretOf(u)); err != nil {
			t.Fatal(err)
		}
	}

	// burst sends n logins of username at once, alternating replicas;
	// the one at index right (if any) has the right password.
	burst := func(username, addr string, n, right int) map[int]int {
		var (
			mu       sync.Mutex
			statuses = map[int]int{}
			wg       sync.WaitGroup
		)
		for i := range n {
			wg.Go(func() {
				pw := "wrong-password"
				if i == right {
					pw = secretOf(username).Reveal()
				}
				rp := replicas[i%2].do(http.MethodPost, "/api/v1/login", "", addr, map[string]string{"username": username, "password": pw})
				if rp.status == http.StatusTooManyRequests {
					checkThrottled(t, rp)
				}
				mu.Lock()
				defer mu.Unlock()
				statuses[rp.status]++
			})
		}
		wg.Wait()
		return statuses
	}

	got := burst("victim", "192.0.2.10:5000", 60, -1)
	if got[401] != auth.MaxLoginFailuresPerUser || got[429] != 60-auth.MaxLoginFailuresPerUser {
		t.Fatalf("60 concurrent wrong passwords on two replicas were answered %v, want %d × 401 and the rest 429", got, auth.MaxLoginFailuresPerUser)
	}
	// Over the limit, a burst with the right password in it is refused
	// whole, on both replicas, and from another address too.
	if got := burst("victim", "192.0.2.11:5000", 20, 7); got[429] != 20 {
		t.Fatalf("a burst with the right password, over the limit, was answered %v, want 20 × 429", got)
	}
	// Another user from yet another address is not affected.
	replicas[1].must(200, http.MethodPost, "/api/v1/login", "", map[string]string{"username": "other", "password": secretOf("other").Reveal()})

	// One address guessing at many usernames: MaxLoginFailuresPerAddress
	// guesses, then 429, even for a user it has not tried yet.
	for i := range auth.MaxLoginFailuresPerAddress {
		rp := replicas[i%2].do(http.MethodPost, "/api/v1/login", "", "198.51.100.9:1", map[string]string{"username": fmt.Sprint("nobody", i), "password": "wrong-password"})
		if rp.status != http.StatusUnauthorized {
			t.Fatalf("guess %d from one address: %d %s, want 401", i, rp.status, rp.body)
		}
	}
	rp := replicas[0].do(http.MethodPost, "/api/v1/login", "", "198.51.100.9:2", map[string]string{"username": "other", "password": secretOf("other").Reveal()})
	if rp.status != http.StatusTooManyRequests {
		t.Fatalf("an address past its limit logged in: %d %s", rp.status, rp.body)
	}
	checkThrottled(t, rp)

	// Failures count for the window they fell in and the next one.
	c.advance(auth.LoginWindow)
	if rp := replicas[1].do(http.MethodPost, "/api/v1/login", "", "192.0.2.12:1", map[string]string{"username": "victim", "password": secretOf("victim").Reveal()}); rp.status != http.StatusTooManyRequests {
		t.Fatalf("one window later: %d, want 429 still", rp.status)
	}
	c.advance(auth.LoginWindow)
	replicas[1].must(200, http.MethodPost, "/api/v1/login", "", map[string]string{"username": "victim", "password": secretOf("victim").Reveal()})
}

// checkThrottled asserts what a throttled caller sees: 429, a Retry-After
// within the window, the error envelope.
func checkThrottled(t *testing.T, rp reply) {
	t.Helper()
	secs, err := strconv.Atoi(rp.header.Get("Retry-After"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > auth.LoginWindow+time.Second {
		t.Errorf("429 with Retry-After %q, want 1 to %.0f seconds", rp.header.Get("Retry-After"), auth.LoginWindow.Seconds())
	}
	var env struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rp.body, &env); err != nil || env.Error.Code != httpapi.CodeRateLimited || env.Error.Message == "" {
		t.Errorf("429 body %s, want code %s and a message", rp.body, httpapi.CodeRateLimited)
	}
}
