/*
 * recv-count: the socket's own limit. Binds 127.0.0.1:PORT, receives with recvmmsg (batches of
 * 64) and only counts datagrams and bytes; no decoding.
 *
 * Usage: recv-count PORT [RCVBUF_BYTES]
 *   RCVBUF_BYTES is set with SO_RCVBUF, as the exporter's --rcvbuf and nfacctd_pipe_size do (the
 *   kernel caps it at net.core.rmem_max and doubles it).
 * Prints "ready rcvbuf=N" once bound, and on SIGINT/SIGTERM "datagrams=N bytes=N", then exits 0.
 *
 * Build: gcc -O2 -Wall -o recv-count recv-count.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define MAXDG 65536

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s PORT [RCVBUF_BYTES]\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("recv-count: socket");
		return 1;
	}
	if (argc == 3) {
		int size = atoi(argv[2]);
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0)
			perror("recv-count: SO_RCVBUF");
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("recv-count: bind");
		return 1;
	}

	/* no SA_RESTART: a signal interrupts the blocking recvmmsg */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int granted = 0;
	socklen_t gl = sizeof granted;
	getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &gl);
	printf("ready rcvbuf=%d\n", granted);
	fflush(stdout);

	static char bufs[BATCH][MAXDG];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = MAXDG;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	unsigned long long dgrams = 0, bytes = 0;
	while (!stop) {
		int r = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("recv-count: recvmmsg");
			return 1;
		}
		dgrams += r;
		for (int i = 0; i < r; i++)
			bytes += msgs[i].msg_len;
	}
	printf("datagrams=%llu bytes=%llu\n", dgrams, bytes);
	return 0;
}
