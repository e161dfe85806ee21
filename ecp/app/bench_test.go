package app

import (
	"fmt"
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/clusterspec"
	"github.com/ecpio/ecp/ecp/quota"
)

// BenchmarkListClusters measures the cluster lists over HTTP with 2000
// entries spread over 20 projects, the per-project list reading one
// project's 100 of them.
func BenchmarkListClusters(b *testing.B) {
	h := startWith(b, benchOptions(b), false)
	admin := h.login("admin", testAdminPassword)
	org := h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "o"}))
	var projects []string
	for i := range 20 {
		projects = append(projects, h.id(h.must(201, "POST", "/api/v1/orgs/"+org+"/projects", admin, map[string]string{"name": fmt.Sprint("p", i)})))
	}
	// Entries go straight through the ledger: the benchmark is about
	// reading them.
	for i := range 2000 {
		s := clusterspec.Spec{ID: fmt.Sprintf("c%05d", i), Name: fmt.Sprint("c", i), Project: projects[i%20], MaxConnections: 10}
		if err := h.app.ledger.Create(b.Context(), s); err != nil {
			b.Fatal(err)
		}
	}
	for name, path := range map[string]string{"project": "/api/v1/projects/" + projects[0] + "/clusters", "all": "/api/v1/clusters"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if r := h.do(http.MethodGet, path, admin, nil); r.status != 200 {
					b.Fatalf("%d %s", r.status, r.body)
				}
			}
		})
	}
}

func benchOptions(b *testing.B) Options {
	b.Helper()
	opts := DefaultOptions()
	opts.ListenAddress = "127.0.0.1:0"
	opts.DataDir = b.TempDir()
	opts.BcryptCost = bcrypt.MinCost
	opts.AdminPassword = testAdminPassword
	opts.Licence = quota.Licence{TotalConnections: 1 << 30, MaxPerCluster: 1 << 20}
	return opts
}
