package image

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// servedTree builds a `ksboot serve` directory: one node's seed from
// WriteDir, the agent binary at the top, and things that must never be
// served: a secret next to the tree, symbolic links pointing at it, a dot
// file and a leftover temporary file.
func servedTree(t *testing.T) (dir string, node []File, agent []byte) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "seeds")
	node = seedFiles(10)
	if err := WriteDir(filepath.Join(dir, "node1"), node); err != nil {
		t.Fatal(err)
	}
	agent = seedFiles(3 << 20)[3].Data
	if err := WriteDir(dir, []File{{Name: "ksboot", Data: agent, Mode: 0o755}}); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		filepath.Join(root, "secret.txt"):                       "cluster CA key\n",
		filepath.Join(dir, ".hidden"):                           "hidden\n",
		filepath.Join(dir, "node1", ".user-data.tmp-123456789"): "partial\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		filepath.Join(dir, "node1", "link"): "../../secret.txt",
		filepath.Join(dir, "escape"):        "..",
		filepath.Join(dir, "node2"):         "node1", // stays inside the tree
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return dir, node, agent
}

// captureLog routes slog.Default into a buffer for the test.
func captureLog(t *testing.T) *lockedBuffer {
	t.Helper()
	buf := &lockedBuffer{}
	saved := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(saved) })
	return buf
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHandler(t *testing.T) {
	dir, node, agent := servedTree(t)
	userData := node[0].Data
	h := Handler(dir)

	tests := []struct {
		name       string
		method     string
		target     string // request target exactly as sent
		wantStatus int
		wantBody   []byte // nil: not checked
		wantLog    string // in addition to method, path and status
	}{
		{name: "user-data", target: "/node1/user-data", wantStatus: 200, wantBody: userData},
		{name: "meta-data", target: "/node1/meta-data", wantStatus: 200, wantBody: node[1].Data},
		{name: "agent binary", target: "/ksboot", wantStatus: 200, wantBody: agent, wantLog: fmt.Sprintf("bytes=%d", len(agent))},
		{name: "head", method: http.MethodHead, target: "/node1/user-data", wantStatus: 200, wantBody: []byte{}},
		{name: "symlink inside the tree", target: "/node2/user-data", wantStatus: 200, wantBody: userData},
		{name: "optional file missing", target: "/node1/vendor-data", wantStatus: 404},
		{name: "no listing of the root", target: "/", wantStatus: 404},
		{name: "no listing of a node", target: "/node1/", wantStatus: 404},
		{name: "directory without slash", target: "/node1", wantStatus: 404},
		{name: "dot dot", target: "/../secret.txt", wantStatus: 404},
		{name: "dot dot inside", target: "/node1/../../secret.txt", wantStatus: 404},
		{name: "encoded dot dot", target: "/%2e%2e/secret.txt", wantStatus: 404},
		{name: "encoded slash", target: "/node1%2f..%2f..%2fsecret.txt", wantStatus: 404},
		{name: "back slash", target: `/node1\..\..\secret.txt`, wantStatus: 404},
		{name: "empty segment", target: "/node1//user-data", wantStatus: 404},
		{name: "symlink to a file outside", target: "/node1/link", wantStatus: 404, wantLog: "refusing seed request"},
		{name: "symlink to a directory outside", target: "/escape/secret.txt", wantStatus: 404, wantLog: "refusing seed request"},
		{name: "dot file", target: "/.hidden", wantStatus: 404},
		{name: "temporary file", target: "/node1/.user-data.tmp-123456789", wantStatus: 404},
		{name: "post", method: http.MethodPost, target: "/node1/user-data", wantStatus: 405},
		{name: "put", method: http.MethodPut, target: "/node1/user-data", wantStatus: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := captureLog(t)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, tc.target, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tc.wantStatus {
				t.Errorf("%s %s: status %d, want %d", method, tc.target, rec.Code, tc.wantStatus)
			}
			body := rec.Body.Bytes()
			if bytes.Contains(body, []byte("cluster CA key")) || bytes.Contains(body, []byte("partial")) || bytes.Contains(body, []byte("hidden")) {
				t.Fatalf("%s %s served something it must not: %q", method, tc.target, body)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Errorf("%s %s: body of %d bytes, want %d", method, tc.target, len(body), len(tc.wantBody))
			}
			if tc.wantStatus == 200 {
				if got := rec.Header().Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", got)
				}
			}
			if tc.wantStatus == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want GET, HEAD", rec.Header().Get("Allow"))
			}
			log := logs.String()
			for _, want := range []string{
				`msg="seed request"`,
				"method=" + method,
				fmt.Sprintf("status=%d", tc.wantStatus),
				tc.wantLog,
			} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if strings.Contains(log, "cluster CA key") {
				t.Errorf("log shows file content:\n%s", log)
			}
		})
	}
}

// TestHandlerOverHTTP goes through a real server and client, as cloud-init
// and the agent download would: whole files (the server's sendfile path),
// ranges, and HEAD.
func TestHandlerOverHTTP(t *testing.T) {
	dir, node, agent := servedTree(t)
	logs := captureLog(t)
	srv := httptest.NewServer(Handler(dir))
	t.Cleanup(srv.Close)

	get := func(t *testing.T, method, path string, header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	t.Run("nocloud-net files", func(t *testing.T) {
		for _, f := range node {
			resp, body := get(t, http.MethodGet, "/node1/"+f.Name, nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, f.Data) {
				t.Errorf("GET /node1/%s: status %d, %d bytes; want 200 and %d bytes", f.Name, resp.StatusCode, len(body), len(f.Data))
			}
		}
	})
	t.Run("agent binary", func(t *testing.T) {
		resp, body := get(t, http.MethodGet, "/ksboot", nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, agent) {
			t.Errorf("GET /ksboot: status %d, %d bytes; want 200 and %d bytes", resp.StatusCode, len(body), len(agent))
		}
	})
	t.Run("range", func(t *testing.T) {
		resp, body := get(t, http.MethodGet, "/ksboot", http.Header{"Range": {"bytes=1000-1999"}})
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, agent[1000:2000]) {
			t.Errorf("ranged GET: status %d, %d bytes; want 206 and 1000 bytes", resp.StatusCode, len(body))
		}
	})
	t.Run("head", func(t *testing.T) {
		resp, body := get(t, http.MethodHead, "/ksboot", nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(agent)) {
			t.Errorf("HEAD: status %d, %d body bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
		}
	})
	t.Run("traversal over the wire", func(t *testing.T) {
		// Opaque sends the path exactly as written; clients would
		// otherwise clean it before it reaches the server.
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = "/../secret.txt"
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || bytes.Contains(body, []byte("cluster CA key")) {
			t.Errorf("GET /../secret.txt: status %d, body %q", resp.StatusCode, body)
		}
	})
	srv.Close() // waits for handlers, so every request has been logged
	if want := fmt.Sprintf("path=/ksboot status=200 bytes=%d", len(agent)); !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

func TestSeedPath(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"/node1/user-data", "node1/user-data", true},
		{"/ksboot", "ksboot", true},
		{"", "", false},
		{"/", "", false},
		{"node1/user-data", "", false},
		{"/node1/", "", false},
		{"/./ksboot", "", false},
		{"/a/../ksboot", "", false},
		{"/a\x00b", "", false},
	}
	for _, tc := range tests {
		got, ok := seedPath(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("seedPath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
