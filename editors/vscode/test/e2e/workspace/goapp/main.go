// The Go program of the end-to-end test: built by dlv with the buildFlags tether patched, it
// reads a file only the target has, calls a service only the target's network reaches and
// writes what it saw to the file named by its first argument. Then it stays up until the
// debugger stops it.
package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func main() {
	res := map[string]any{"pid": os.Getpid(), "greeting": os.Getenv("POD_GREETING")}
	if b, err := os.ReadFile("/app/message.txt"); err == nil {
		res["file"] = string(b)
	} else {
		res["fileError"] = err.Error()
	}
	client := http.Client{Timeout: 10 * time.Second}
	if r, err := client.Get("http://web.svc.cluster.local/"); err == nil {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		res["http"] = string(b)
	} else {
		res["httpError"] = err.Error()
	}
	exe, _ := os.Executable()
	res["exe"] = exe
	out := os.Args[1]
	os.MkdirAll(filepath.Dir(out), 0o755)
	b, _ := json.MarshalIndent(res, "", "  ")
	os.WriteFile(out+".tmp", b, 0o644)
	os.Rename(out+".tmp", out)
	time.Sleep(10 * time.Minute)
}
