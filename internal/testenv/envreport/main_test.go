package main

import (
	"strings"
	"testing"
)

func TestReportNamesOnlyUnsetVariablesThatAreRead(t *testing.T) {
	readers := map[string][]string{
		"FLOTILLA_TEST_B": {"shop/kit/kittest"},
		"FLOTILLA_TEST_A": {"bus/nats", "internal/sqldb/sqldbtest"},
		"FLOTILLA_TEST_C": {"contract"},
	}
	env := map[string]string{"FLOTILLA_TEST_C": "set", "FLOTILLA_TEST_B": " ", "FLOTILLA_TEST_UNREAD": ""}
	var out strings.Builder
	report(&out, readers, func(k string) string { return env[k] })
	want := "note: FLOTILLA_TEST_A not set: suites that need it are skipped (read in bus/nats, internal/sqldb/sqldbtest)\n" +
		"note: FLOTILLA_TEST_B not set: suites that need it are skipped (read in shop/kit/kittest)\n"
	if out.String() != want {
		t.Errorf("report =\n%s\nwant\n%s", out.String(), want)
	}
}
