package image

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// Handler serves the tree under dir, as written by WriteDir, read-only over
// HTTP for `ksboot serve`. cloud-init's nocloud-net data source, booted with
// ds=nocloud;s=http://host:port/<node>/, fetches /<node>/meta-data,
// /<node>/user-data, /<node>/vendor-data and /<node>/network-config; the
// agent binary is fetched the same way.
//
// Only regular files are served. Directories are never listed (a listing
// would show every node's seed to anyone who asks), path segments starting
// with a dot are refused (no "..", no hidden or temporary files), and files
// are opened through os.OpenInRoot, so neither the path nor a symbolic link
// inside dir can reach anything outside it. Every request is logged with
// slog.Default.
func Handler(dir string) http.Handler {
	return &seedHandler{dir: dir}
}

type seedHandler struct {
	dir string
}

func (h *seedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &responseRecorder{ResponseWriter: w}
	h.serve(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	// The query string is left out: nothing here uses it, so it can only
	// carry noise or something a client should not have sent.
	slog.Default().LogAttrs(r.Context(), level, "seed request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.written),
		slog.String("remote", r.RemoteAddr),
		slog.Duration("duration", time.Since(start)),
	)
}

func (h *seedHandler) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := seedPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	f, err := os.OpenInRoot(h.dir, name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			// Escapes through symbolic links and permission problems
			// land here; the client only learns "not found", the
			// operator gets the reason.
			slog.Default().WarnContext(r.Context(), "refusing seed request", slog.String("path", r.URL.Path), slog.Any("error", err))
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	// Seeds carry tokens and keys: no cache on the way may keep them.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}

// seedPath turns a URL path into a name relative to the served directory,
// or reports false for anything that is not a plain file path: the root,
// empty segments, and segments starting with a dot (which covers "." and
// ".."). Back slashes and NUL bytes are refused outright rather than
// trusting every layer below to treat them as ordinary characters.
func seedPath(urlPath string) (string, bool) {
	name, ok := strings.CutPrefix(urlPath, "/")
	if !ok || name == "" || strings.ContainsAny(name, "\\\x00") {
		return "", false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg[0] == '.' {
			return "", false
		}
	}
	return name, fs.ValidPath(name)
}

// responseRecorder remembers the status and counts the body bytes for the
// request log.
type responseRecorder struct {
	http.ResponseWriter
	status  int
	written int64
}

func (r *responseRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *responseRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.written += int64(n)
	return n, err
}

// ReadFrom keeps the server's sendfile path for the agent binary, which
// would otherwise be copied through user space in 32 KiB pieces.
func (r *responseRecorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		r.written += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	r.written += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *responseRecorder) Unwrap() http.ResponseWriter {
	return r.ResponseWriter
}
