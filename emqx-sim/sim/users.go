package sim

import (
	"net/http"
	"slices"
	"strings"
	"unicode"

	"github.com/ecpio/ecp/internal/secret"
)

// Dashboard users, as EMQX 5.8's emqx_dashboard_api.erl and
// emqx_dashboard_admin.erl serve them: GET/POST /users,
// PUT/DELETE /users/{username}, POST /users/{username}/change_pwd, all
// Bearer only. The RBAC of emqx_dashboard_rbac.erl (roleAllows) lets a
// viewer do none of the writes except changing its own password.

// userJSON is one user as GET /users and the writes answer it.
func userJSON(u *dashUser) map[string]any {
	return map[string]any{"username": u.username, "role": u.role, "description": u.desc, "backend": "local"}
}

func (s *Sim) listUsers(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	s.mu.Lock()
	names := make([]string, 0, len(s.users))
	for n := range s.users {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]any, 0, len(names))
	for _, n := range names {
		out = append(out, userJSON(s.users[n]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// legalUsername is emqx_dashboard_admin:legal_username/1.
func legalUsername(n string) string {
	if n == "" {
		return "Username cannot be empty"
	}
	for _, c := range n {
		if c != '_' && (c > unicode.MaxASCII || !unicode.IsLetter(c) && !unicode.IsDigit(c)) {
			return "Bad Username. Only upper and lower case letters, numbers and underscores are supported"
		}
	}
	return ""
}

// legalPassword is emqx_dashboard_admin:legal_password/1: 8 to 64
// characters, ASCII, of at least two kinds among letters, digits and
// specials.
func legalPassword(p string) string {
	if len([]rune(p)) < 8 || len([]rune(p)) > 64 {
		return "The range of password length is 8~64"
	}
	const specials = "!@#$%^&*()_+-=[]{}\"|;':,./<>?`~ "
	kinds := 0
	for _, has := range []func(rune) bool{
		func(c rune) bool { return c >= '0' && c <= '9' },
		func(c rune) bool { return c < unicode.MaxASCII && unicode.IsLetter(c) },
		func(c rune) bool { return strings.ContainsRune(specials, c) },
	} {
		if strings.ContainsFunc(p, has) {
			kinds++
		}
	}
	if kinds < 2 {
		return "Bad password. At least two different kind of characters from groups of letters, numbers, and special characters. " +
			"For example, if password is composed from letters, it must contain at least one number or a special character."
	}
	if strings.ContainsFunc(p, func(c rune) bool { return c > unicode.MaxASCII }) {
		return "Only ascii characters are allowed in the password"
	}
	return ""
}

func validDashboardRole(r string) bool { return r == RoleAdministrator || r == RoleViewer }

func (s *Sim) createUser(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	var b struct {
		Username    *string `json:"username"`
		Password    *string `json:"password"`
		Role        *string `json:"role"`
		Description string  `json:"description"`
	}
	if !readJSON(w, r, &b) {
		return
	}
	if b.Username == nil || b.Password == nil || len(*b.Username) > 100 || len(*b.Password) > 100 {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	if *b.Username == "" || *b.Password == "" {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Username or password undefined")
		return
	}
	role := RoleAdministrator // ?ROLE_DEFAULT
	if b.Role != nil {
		role = *b.Role
	}
	msg := legalUsername(*b.Username)
	if msg == "" {
		msg = legalPassword(*b.Password)
	}
	if msg == "" && !validDashboardRole(role) {
		msg = "Role does not exist"
	}
	if msg != "" {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", msg)
		return
	}
	s.mu.Lock()
	if _, ok := s.users[*b.Username]; ok {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "username_already_exists")
		return
	}
	u := &dashUser{username: *b.Username, password: secret.String(*b.Password), role: role, desc: b.Description}
	s.users[u.username] = u
	out := userJSON(u)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) updateUser(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
	var b struct {
		Role        *string `json:"role"`
		Description *string `json:"description"`
	}
	if !readJSON(w, r, &b) {
		return
	}
	role := RoleAdministrator
	if b.Role != nil {
		role = *b.Role
	}
	if !validDashboardRole(role) {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Role does not exist")
		return
	}
	s.mu.Lock()
	u, ok := s.users[ps["username"]]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "USER_NOT_FOUND", "username_not_found")
		return
	}
	if b.Description != nil {
		u.desc = *b.Description
	}
	// A token keeps the role it was signed with; EMQX destroys the
	// user's tokens when the role changes.
	if u.role != role {
		u.role = role
		s.dropTokensLocked(u.username)
	}
	out := userJSON(u)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) deleteUser(w http.ResponseWriter, _ *http.Request, p principal, ps params) {
	name := ps["username"]
	if name == s.opts.DashboardUsername {
		writeError(w, http.StatusBadRequest, "NOT_ALLOWED", `Cannot delete user <<"`+name+`">>`)
		return
	}
	if name == p.username {
		writeError(w, http.StatusBadRequest, "NOT_ALLOWED", "Cannot delete self")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[name]; !ok {
		writeError(w, http.StatusNotFound, "USER_NOT_FOUND", "username_not_found")
		return
	}
	delete(s.users, name)
	s.dropTokensLocked(name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) changePassword(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
	var b struct {
		OldPwd string `json:"old_pwd"`
		NewPwd string `json:"new_pwd"`
	}
	if !readJSON(w, r, &b) {
		return
	}
	if b.OldPwd == "" || b.NewPwd == "" {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Old password or new password undefined")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[ps["username"]]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "USER_NOT_FOUND", "User not found")
	case u.password.Reveal() != b.OldPwd:
		writeError(w, http.StatusBadRequest, "ERROR_PWD_NOT_MATCH", "Old password not match")
	case legalPassword(b.NewPwd) != "":
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", legalPassword(b.NewPwd))
	default:
		u.password = secret.String(b.NewPwd)
		s.dropTokensLocked(u.username)
		w.WriteHeader(http.StatusNoContent)
	}
}

// dropTokensLocked ends every session of username, as EMQX does when the
// user is removed or its password changes.
func (s *Sim) dropTokensLocked(username string) {
	for tok, t := range s.tokens {
		if t.username == username {
			delete(s.tokens, tok)
		}
	}
}
