package agentproto

import (
	"strings"
	"testing"
)

func TestDashboardLoginSealing(t *testing.T) {
	key, pub, err := NewDashboardKey()
	if err != nil {
		t.Fatal(err)
	}
	other, otherPub, err := NewDashboardKey()
	if err != nil {
		t.Fatal(err)
	}
	want := DashboardLogin{Username: "admin", Token: "jwt-token-value", Role: "administrator", Version: "5.8.9", Edition: "ee"}
	sealed, err := SealDashboardLogin(pub, want)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, want.Token) {
		t.Fatalf("sealed form shows the token")
	}
	tests := []struct {
		name    string
		key     *DashboardKey
		sealed  string
		wantErr bool
	}{
		{"own key opens", key, sealed, false},
		{"another request's key cannot", other, sealed, true},
		{"tampered", key, sealed[:len(sealed)-4] + "AAAA", true},
		{"not base64", key, "%%%", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(tt.sealed)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Open err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != want {
				t.Fatalf("Open = %+v, want %+v", got, want)
			}
		})
	}
	if _, err := SealDashboardLogin("bm90IGEga2V5", want); err == nil {
		t.Fatal("sealing to a malformed key succeeded")
	}
	_ = otherPub
}
