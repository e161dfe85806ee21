package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"sort"
	"strings"
	"time"
)

// params are the {name} segments of a matched route.
type params map[string]string

type handlerFunc func(w http.ResponseWriter, r *http.Request, p principal, ps params)

// route is one path template with its methods. EMQX's router (cowboy +
// minirest) answers an unknown path with the catch-all 404 before any auth
// check, and a known path with a wrong method with 405 and an allow header.
type route struct {
	segs    []string
	auth    authMode
	api     bool // under /api/v5: API faults apply
	methods map[string]handlerFunc
}

type router struct {
	s      *Sim
	routes []*route
}

func (rt *router) handle(method, pattern string, auth authMode, h handlerFunc) {
	segs := strings.Split(strings.Trim(pattern, "/"), "/")
	for _, r := range rt.routes {
		if strings.Join(r.segs, "/") == strings.Join(segs, "/") {
			r.methods[method] = h
			return
		}
	}
	rt.routes = append(rt.routes, &route{
		segs: segs, auth: auth, api: strings.HasPrefix(pattern, "/api/v5/"),
		methods: map[string]handlerFunc{method: h},
	})
}

func (rt *router) match(path string) (*route, params) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, r := range rt.routes {
		if len(r.segs) != len(segs) {
			continue
		}
		var ps params
		ok := true
		for i, seg := range r.segs {
			if strings.HasPrefix(seg, "{") {
				if segs[i] == "" {
					ok = false
					break
				}
				if ps == nil {
					ps = params{}
				}
				ps[strings.Trim(seg, "{}")] = segs[i]
				continue
			}
			if seg != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return r, ps
		}
	}
	return nil, nil
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ro, ps := rt.match(r.URL.Path)
	if ro == nil {
		notFound(w, r)
		return
	}
	h, ok := ro.methods[r.Method]
	if !ok {
		allow := make([]string, 0, len(ro.methods))
		for m := range ro.methods {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		w.Header().Set("allow", strings.Join(allow, ", "))
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if ro.api {
		defer rt.s.enterAPI(r.URL.Path)()
		if !rt.s.applyAPIFault(w, r) {
			return
		}
	}
	resource := ""
	if len(ro.segs) > 2 {
		resource = ro.segs[2]
	}
	p, ok := rt.s.authenticate(w, r, ro.auth, resource)
	if !ok {
		return
	}
	h(w, r, p, ps)
}

// notFound is EMQX's catch-all 404: JSON, text or HTML by Accept.
func notFound(w http.ResponseWriter, r *http.Request) {
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "application/json"):
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Request Path Not Found")
	case strings.Contains(accept, "text/plain"):
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("404 - NOT FOUND"))
	default:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>404 - NOT FOUND</title></head><body><h1>404 - NOT FOUND</h1><p>" +
			html.EscapeString(r.URL.Path) + "</p></body></html>"))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
		return
	}
	b := bytes.TrimRight(buf.Bytes(), "\n")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes EMQX's error body {"code","message"}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "message": msg})
}

// readJSON decodes a request body; an empty body reads as {}. A body that is
// not JSON gets EMQX's 400 and false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid json message received")
		return false
	}
	body := bytes.TrimSpace(buf.Bytes())
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || !json.Valid(body) {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid json message received")
		} else {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		}
		return false
	}
	return true
}

// rfc3339ms formats times as EMQX does for rules and alarms:
// "2024-05-13T10:00:43.153+08:00".
func rfc3339ms(t time.Time) string { return t.Format("2006-01-02T15:04:05.000-07:00") }
