package notification_test

import (
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// smtpServer is a small real SMTP server (RFC 5321's commands the client
// uses) that keeps what it accepts, and can be told to refuse.
type smtpServer struct {
	ln net.Listener

	mu       sync.Mutex
	mails    []received
	tempFail int             // answer 451 at the end of DATA this many times
	reject   map[string]bool // RCPT TO answered 550
}

type received struct {
	From, To string
	Data     string
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln, reject: map[string]bool{}}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return s
}

func (s *smtpServer) Addr() string { return s.ln.Addr().String() }

func (s *smtpServer) Mails(to string) []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []received
	for _, m := range s.mails {
		if to == "" || m.To == to {
			out = append(out, m)
		}
	}
	return out
}

func (s *smtpServer) set(fn func()) {
	s.mu.Lock()
	fn()
	s.mu.Unlock()
}

func addr(arg string) string {
	i, j := strings.IndexByte(arg, '<'), strings.IndexByte(arg, '>')
	if i < 0 || j < i {
		return ""
	}
	return arg[i+1 : j]
}

func (s *smtpServer) serve(c net.Conn) {
	tp := textproto.NewConn(c)
	defer func() { _ = tp.Close() }()
	_ = tp.PrintfLine("220 test.local ESMTP")
	var from string
	var to []string
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			_ = tp.PrintfLine("250-test.local\r\n250 8BITMIME")
		case "HELO", "NOOP":
			_ = tp.PrintfLine("250 OK")
		case "MAIL":
			from, to = addr(arg), nil
			_ = tp.PrintfLine("250 2.1.0 OK")
		case "RCPT":
			a := addr(arg)
			s.mu.Lock()
			rej := s.reject[a]
			s.mu.Unlock()
			if rej {
				_ = tp.PrintfLine("550 5.1.1 <%s>: no such mailbox", a)
				continue
			}
			to = append(to, a)
			_ = tp.PrintfLine("250 2.1.5 OK")
		case "DATA":
			if from == "" || len(to) == 0 {
				_ = tp.PrintfLine("503 5.5.1 MAIL and RCPT first")
				continue
			}
			_ = tp.PrintfLine("354 end with <CRLF>.<CRLF>")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			s.mu.Lock()
			fail := s.tempFail > 0
			if fail {
				s.tempFail--
			} else {
				for _, rc := range to {
					s.mails = append(s.mails, received{From: from, To: rc, Data: string(data)})
				}
			}
			s.mu.Unlock()
			if fail {
				_ = tp.PrintfLine("451 4.3.0 try again later")
			} else {
				_ = tp.PrintfLine("250 2.0.0 queued")
			}
			from, to = "", nil
		case "RSET":
			from, to = "", nil
			_ = tp.PrintfLine("250 OK")
		case "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("502 5.5.2 command not implemented")
		}
	}
}
