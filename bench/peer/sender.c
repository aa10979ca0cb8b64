/*
 * sender: replays a file of NetFlow/IPFIX datagrams to 127.0.0.1:PORT from one UDP socket with
 * sendmmsg, paced to a target rate, looping over the file until at least N flows are sent.
 *
 * Datagram file (written by make-load.py): the 4 bytes "DGF1", then per datagram
 *   u16 big-endian payload length, u16 big-endian flow records in it, payload.
 * The flow count excludes template and options records, so "flows sent" is exactly what a
 * collector that decodes every datagram must count.
 *
 * Usage: sender -f FILE -p PORT [-r FLOWS_PER_S | -d DATAGRAMS_PER_S] [-n MIN_FLOWS] [-b BATCH]
 *   -r / -d  pace to this many flows (or datagrams) per second; neither, or 0: as fast as it can
 *   -n       stop at the first datagram where the flows sent reach this (default 3,000,000)
 *   -b       datagrams per sendmmsg call (default 32)
 * Output, one line on stdout:
 *   datagrams=N flows=N bytes=N loops=X elapsed_s=X flows_per_s=X datagrams_per_s=X retries=N
 *
 * Decisions:
 * - The whole file is read into memory and every datagram's mmsghdr is prepared once; the send
 *   loop only picks a window of them.
 * - Pacing is by cumulative work, not per batch: batch k may start at start + sent/rate, so a late
 *   batch is caught up by the next ones and the mean rate is exact. Waits longer than 200 us sleep
 *   (absolute clock_nanosleep), the rest spins: the sender owns its core (the driver pins it).
 * - An unconnected socket (msg_name per message): a missing receiver does not turn into
 *   ECONNREFUSED on the next send, and the receiver's drops are the kernel's business.
 * - CPU pinning is done by the caller (taskset), not here.
 *
 * Build: gcc -O2 -Wall -o sender sender.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct load {
	unsigned char *data;   /* the file */
	struct mmsghdr *msgs;  /* one per datagram, pointing into data */
	struct iovec *iovs;
	uint32_t *flows;       /* flow records per datagram */
	size_t n;              /* datagrams */
	uint64_t flows_total;  /* flow records in one pass over the file */
	uint64_t bytes_total;
};

static void die(const char *msg)
{
	fprintf(stderr, "sender: %s\n", msg);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void wait_until(double t)
{
	double left = t - now_s();
	if (left > 200e-6) {
		double wake = t - 100e-6;
		struct timespec ts = { (time_t)wake, (long)((wake - (time_t)wake) * 1e9) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	while (now_s() < t)
		;
}

static void read_load(const char *path, struct sockaddr_in *dst, struct load *l)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) != 0)
		die("cannot open the datagram file");
	l->data = malloc(st.st_size ? st.st_size : 1);
	if (!l->data || fread(l->data, 1, st.st_size, f) != (size_t)st.st_size)
		die("cannot read the datagram file");
	fclose(f);
	size_t size = st.st_size;
	if (size < 4 || memcmp(l->data, "DGF1", 4) != 0)
		die("not a datagram file (magic DGF1 missing)");

	/* first pass: count, second pass: index */
	size_t n = 0, off = 4;
	while (off + 4 <= size) {
		size_t len = (l->data[off] << 8) | l->data[off + 1];
		if (off + 4 + len > size)
			die("truncated datagram file");
		off += 4 + len;
		n++;
	}
	if (off != size || n == 0)
		die("malformed or empty datagram file");
	l->n = n;
	l->msgs = calloc(n, sizeof *l->msgs);
	l->iovs = calloc(n, sizeof *l->iovs);
	l->flows = calloc(n, sizeof *l->flows);
	if (!l->msgs || !l->iovs || !l->flows)
		die("out of memory");
	off = 4;
	for (size_t i = 0; i < n; i++) {
		size_t len = (l->data[off] << 8) | l->data[off + 1];
		l->flows[i] = (l->data[off + 2] << 8) | l->data[off + 3];
		l->iovs[i].iov_base = l->data + off + 4;
		l->iovs[i].iov_len = len;
		l->msgs[i].msg_hdr.msg_name = dst;
		l->msgs[i].msg_hdr.msg_namelen = sizeof *dst;
		l->msgs[i].msg_hdr.msg_iov = &l->iovs[i];
		l->msgs[i].msg_hdr.msg_iovlen = 1;
		l->flows_total += l->flows[i];
		l->bytes_total += len;
		off += 4 + len;
	}
}

int main(int argc, char **argv)
{
	const char *file = NULL;
	int port = 0, batch = 32, opt;
	double flow_rate = 0, dgram_rate = 0;
	unsigned long long min_flows = 3000000ULL;

	while ((opt = getopt(argc, argv, "f:p:r:d:n:b:")) != -1) {
		switch (opt) {
		case 'f': file = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'r': flow_rate = atof(optarg); break;
		case 'd': dgram_rate = atof(optarg); break;
		case 'n': min_flows = strtoull(optarg, NULL, 10); break;
		case 'b': batch = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (!file || port <= 0 || port > 65535 || batch < 1 || batch > 1024 ||
	    (flow_rate > 0 && dgram_rate > 0) || flow_rate < 0 || dgram_rate < 0)
		goto usage;

	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct load l = { 0 };
	read_load(file, &dst, &l);
	if (l.flows_total == 0)
		die("the file holds no flow records");

	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket failed");

	unsigned long long dgrams = 0, flows = 0, bytes = 0, retries = 0;
	size_t pos = 0; /* next datagram of the file */
	double start = now_s();
	while (flows < min_flows) {
		/* pace: this batch may not start before the work already sent is due */
		if (flow_rate > 0)
			wait_until(start + flows / flow_rate);
		else if (dgram_rate > 0)
			wait_until(start + dgrams / dgram_rate);

		/* window: up to `batch` datagrams, not past the end of the file, not past min_flows */
		size_t k = 0;
		unsigned long long f = flows;
		while (k < (size_t)batch && pos + k < l.n && f < min_flows)
			f += l.flows[pos + k++];

		size_t done = 0;
		while (done < k) {
			int r = sendmmsg(fd, l.msgs + pos + done, k - done, 0);
			if (r < 0) {
				if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) {
					retries++;
					continue;
				}
				perror("sender: sendmmsg");
				return 1;
			}
			done += r;
		}
		for (size_t i = 0; i < k; i++) {
			flows += l.flows[pos + i];
			bytes += l.iovs[pos + i].iov_len;
		}
		dgrams += k;
		pos += k;
		if (pos == l.n)
			pos = 0;
	}
	double elapsed = now_s() - start;
	printf("datagrams=%llu flows=%llu bytes=%llu loops=%.2f elapsed_s=%.3f flows_per_s=%.0f "
	       "datagrams_per_s=%.0f retries=%llu\n",
	       dgrams, flows, bytes, (double)flows / l.flows_total, elapsed, flows / elapsed,
	       dgrams / elapsed, retries);
	return 0;

usage:
	fprintf(stderr, "usage: %s -f FILE -p PORT [-r FLOWS_PER_S | -d DATAGRAMS_PER_S] "
			"[-n MIN_FLOWS] [-b BATCH]\n", argv[0]);
	return 2;
}
