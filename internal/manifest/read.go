package manifest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"unicode/utf8"
)

// InputError is an input file that cannot be read as text: not a regular
// file (a named pipe would block forever, a device never end), or larger
// than its limit. It is a mistake in the command line, not a failure of the
// machine.
type InputError struct {
	Path string // the file, as given
	Msg  string // what is wrong, e.g. "is a named pipe, not a file"
}

// Error reads "PATH MSG", e.g. "x.yaml is a named pipe, not a file".
func (e *InputError) Error() string { return e.Path + " " + e.Msg }

// ReadFile reads the text file at path, at most limit bytes. It refuses
// what is not a regular file before opening it, so a named pipe never
// blocks, and a file larger than limit before reading it; it stops reading
// once ctx is done, returning ctx's error. Those refusals are *InputError.
func ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkInput(path, st, limit); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should path become a named pipe after the Stat, opening it
	// still returns at once, and the check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkInput(path, st, limit); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	// Room for the whole file and the read that finds its end, so the
	// buffer is never copied to a bigger one.
	b.Grow(int(st.Size()) + bytes.MinRead)
	// The file may grow while it is read: read one byte past the limit to
	// tell.
	if _, err := b.ReadFrom(io.LimitReader(ctxReader{ctx, f}, limit+1)); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if int64(b.Len()) > limit {
		return nil, &InputError{Path: path, Msg: "grew past the limit of " + mibText(limit) + " while it was read"}
	}
	return b.Bytes(), nil
}

// checkInput refuses what is not a regular file, and a file over limit.
func checkInput(path string, st fs.FileInfo, limit int64) error {
	m := st.Mode()
	switch {
	case m.IsDir():
		return &InputError{Path: path, Msg: "is a directory, not a file"}
	case !m.IsRegular():
		return &InputError{Path: path, Msg: "is " + fileKind(m) + ", not a file"}
	case st.Size() > limit:
		return &InputError{Path: path, Msg: "is " + mibText(st.Size()) + ", over the limit of " + mibText(limit)}
	}
	return nil
}

// mibText is a size in MiB for messages, rounded up to a tenth so that a
// size just over a limit never reads as equal to it: "512.1 MiB".
func mibText(n int64) string {
	tenths := (n*10 + 1<<20 - 1) >> 20
	return fmt.Sprintf("%d.%d MiB", tenths/10, tenths%10)
}

// ctxReader is a reader that fails with ctx's error once ctx is done, so a
// long read or parse can be interrupted.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// CheckText finds the first character of data that a YAML file may not
// hold: a byte that is not UTF-8, or a control character other than tab, LF
// and CR (as YAML defines it: C0 and C1 controls but NEL, DEL, surrogates,
// U+FFFE and U+FFFF). It returns its 1-based line and column (the column
// counts characters, as YAML positions do) and a message, or ok true when
// there is none. Data that starts with a UTF-16 byte order mark is left to
// the YAML decoder.
func CheckText(data []byte) (line, col int, msg string, ok bool) {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return 0, 0, "", true
	}
	line, start := 1, 0
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\n':
				line, start = line+1, i+1
			case c == '\r':
				if i+1 == len(data) || data[i+1] != '\n' {
					line, start = line+1, i+1
				}
			case c == '\t' || c >= 0x20 && c != 0x7F:
			default:
				return line, utf8.RuneCount(data[start:i]) + 1, fmt.Sprintf("control character %U is not allowed; remove it", c), false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return line, utf8.RuneCount(data[start:i]) + 1, fmt.Sprintf("byte 0x%02x is not UTF-8; save the file as UTF-8", c), false
		case r < 0xA0 && r != 0x85, r == 0xFFFE, r == 0xFFFF:
			return line, utf8.RuneCount(data[start:i]) + 1, fmt.Sprintf("control character %U is not allowed; remove it", r), false
		}
		i += n
	}
	return 0, 0, "", true
}
