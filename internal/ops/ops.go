// Package ops mounts the operational endpoints both binaries serve, the
// same way: /metrics, /-/healthy, /-/ready (503 with the reason until
// ready), POST /-/reload where the binary reloads, and, when asked for,
// net/http/pprof's profiles under /debug/pprof/. What scrapers and
// operators call goes through Protect (the web configuration's basic
// auth, package webconfig); the probes stay open for load balancers.
package ops

import (
	"net/http"
	"net/http/pprof"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// PprofFlagHelp is the help of both binaries' --web.enable-pprof.
const PprofFlagHelp = "Serve Go profiles (net/http/pprof) under /debug/pprof/, behind the web configuration's basic auth; they show goroutines, memory and the command line, so keep them for debugging."

// Endpoints says what a binary serves.
type Endpoints struct {
	// Name starts the probes' replies ("ecp is ready.").
	Name     string
	Gatherer prometheus.Gatherer
	// Protect wraps /metrics, /-/reload and the profiles; nil leaves them
	// open.
	Protect func(http.Handler) http.Handler
	// NotReady returns "" when the binary is ready, otherwise the reason
	// /-/ready answers 503 with: a sentence that follows "<Name> is not
	// ready: ".
	NotReady func() string
	// Reload, when set, serves POST /-/reload in the binary's own reply
	// format.
	Reload http.Handler
	// Pprof mounts net/http/pprof under /debug/pprof/: CPU and heap
	// profiles, goroutine dumps and the command line, so off by default.
	Pprof bool
}

// Register mounts the endpoints on r.
func (e Endpoints) Register(r *mux.Router) {
	protect := e.Protect
	if protect == nil {
		protect = func(h http.Handler) http.Handler { return h }
	}
	r.Handle("/metrics", protect(promhttp.HandlerFor(e.Gatherer, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 10,
	}))).Methods(http.MethodGet)
	r.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(e.Name + " is healthy.\n"))
	}).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if reason := e.NotReady(); reason != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(e.Name + " is not ready: " + reason + "\n"))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(e.Name + " is ready.\n"))
	}).Methods(http.MethodGet, http.MethodHead)
	if e.Reload != nil {
		r.Handle("/-/reload", protect(e.Reload)).Methods(http.MethodPost)
	}
	if e.Pprof {
		r.Handle("/debug/pprof/cmdline", protect(http.HandlerFunc(pprof.Cmdline))).Methods(http.MethodGet)
		r.Handle("/debug/pprof/profile", protect(http.HandlerFunc(pprof.Profile))).Methods(http.MethodGet)
		r.Handle("/debug/pprof/symbol", protect(http.HandlerFunc(pprof.Symbol))).Methods(http.MethodGet, http.MethodPost)
		r.Handle("/debug/pprof/trace", protect(http.HandlerFunc(pprof.Trace))).Methods(http.MethodGet)
		// Index serves the named profiles (heap, goroutine, allocs, …).
		r.PathPrefix("/debug/pprof/").Handler(protect(http.HandlerFunc(pprof.Index))).Methods(http.MethodGet)
	}
}
