package vm

import (
	"regexp"
	"strings"
	"testing"
)

// These tests need no root, no qemu and no network: they run under -short too.

func TestRecipeKey(t *testing.T) {
	sources := []byte("Types: deb\n")
	base, err := newRecipe(ImageOptions{}, sources)
	if err != nil {
		t.Fatal(err)
	}
	same, err := newRecipe(ImageOptions{HaltOn: DefaultHaltOn, SizeMiB: defaultSizeMiB, ExtraPackages: []string{"procps"}}, sources)
	if err != nil {
		t.Fatal(err)
	}
	if base.key() != same.key() {
		t.Errorf("defaults spelled out and a package of the base set changed the key: %s vs %s", base.key(), same.key())
	}
	for _, tc := range []struct {
		name    string
		opts    ImageOptions
		sources string
	}{
		{"halt path", ImageOptions{HaltOn: "/var/lib/ksboot/bootstrap.complete"}, string(sources)},
		{"extra package", ImageOptions{ExtraPackages: []string{"socat"}}, string(sources)},
		{"size", ImageOptions{SizeMiB: 4096}, string(sources)},
		{"host sources", ImageOptions{}, "Types: deb\nSuites: trixie\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := newRecipe(tc.opts, []byte(tc.sources))
			if err != nil {
				t.Fatal(err)
			}
			if r.key() == base.key() {
				t.Errorf("key %s did not change", r.key())
			}
		})
	}
	if !strings.Contains(base.Files["/etc/systemd/system/ksboot-test-halt.path"], "PathExists="+DefaultHaltOn+"\n") {
		t.Errorf("halt path unit does not watch %s", DefaultHaltOn)
	}
}

func TestRecipeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts ImageOptions
		want string
	}{
		{"relative halt path", ImageOptions{HaltOn: "var/lib/x"}, "HaltOn"},
		{"halt path with space", ImageOptions{HaltOn: "/var/lib/a b"}, "HaltOn"},
		{"unclean halt path", ImageOptions{HaltOn: "/var/lib/../x"}, "HaltOn"},
		{"halt path with specifier", ImageOptions{HaltOn: "/var/lib/%n"}, "HaltOn"},
		{"tiny disk", ImageOptions{SizeMiB: 512}, "SizeMiB"},
		{"package list in one name", ImageOptions{ExtraPackages: []string{"a,b"}}, "ExtraPackages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newRecipe(tc.opts, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestCleanSerial(t *testing.T) {
	in := "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mfoo.service\x1b[0m - Foo.\r\n\x1b[K[  1.0] x\r\n"
	want := "[  OK  ] Started foo.service - Foo.\n[  1.0] x\n"
	if got := cleanSerial([]byte(in)); got != want {
		t.Errorf("cleanSerial:\ngot  %q\nwant %q", got, want)
	}
	if !regexp.MustCompile(`\[  OK  \] Started foo\.service`).MatchString(cleanSerial([]byte(in))) {
		t.Errorf("a status line does not match after cleaning")
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":            "/plain",
		`/with\040space`:    "/with space",
		`/tab\011and\134bs`: "/tab\tand\\bs",
		`/trailing\04`:      `/trailing\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTailString(t *testing.T) {
	if got := tailString("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("tailString = %q", got)
	}
	if got := tailString("a", 5); got != "a" {
		t.Errorf("tailString = %q", got)
	}
}
