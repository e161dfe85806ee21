//go:build linux

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a fresh pseudo-terminal.
func openPTY(t *testing.T) (controller, terminal *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("this test needs /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func echoOn(t *testing.T, f *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// TestReadPasswordWithoutEcho types a password into a real terminal: echo
// is off while it is read and back on afterwards.
func TestReadPasswordWithoutEcho(t *testing.T) {
	controller, terminal := openPTY(t)
	if !echoOn(t, terminal) {
		t.Fatal("a fresh terminal should echo")
	}
	type result struct {
		pw  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := readPassword(terminal, io.Discard, "EMQX password: ")
		done <- result{pw, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for echoOn(t, terminal) {
		if time.Now().After(deadline) {
			t.Fatal("echo never turned off")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := controller.WriteString("hunter2\n"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.pw != "hunter2" {
		t.Fatalf("password %q, err %v", r.pw, r.err)
	}
	if !echoOn(t, terminal) {
		t.Fatal("echo not restored")
	}
}

func TestReadPasswordNotATerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := readPassword(f, io.Discard, "p: "); !errors.Is(err, errNotTerminal) {
		t.Fatalf("err = %v, want errNotTerminal", err)
	}
}
