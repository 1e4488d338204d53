/* The measuring program of `cargo bench -p tether --bench core`: each mode prints one line of
 * numbers, so the same binary runs bare, inside the pod, and under tether. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(double *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    printf("median_us %.3f p99_us %.3f\n", v[n / 2], v[n * 99 / 100]);
}

static int dial(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: core open|read|stat PATH N | rr IP:PORT N | bulk IP:PORT BYTES\n"); return 2; }
    const char *mode = argv[1];
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    double *v = calloc(n > 0 ? n : 1, sizeof *v);
    if (!strcmp(mode, "open") || !strcmp(mode, "read") || !strcmp(mode, "stat")) {
        char buf[8192];
        for (int i = 0; i < n; i++) {
            double t = now_us();
            if (!strcmp(mode, "stat")) {
                struct stat st;
                if (stat(argv[2], &st) < 0) { perror("stat"); return 1; }
            } else {
                int fd = open(argv[2], O_RDONLY);
                if (fd < 0) { perror("open"); return 1; }
                if (!strcmp(mode, "read") && read(fd, buf, sizeof buf) <= 0) { perror("read"); return 1; }
                close(fd);
            }
            v[i] = now_us() - t;
        }
        report(v, n);
        return 0;
    }
    char *colon = strchr(argv[2], ':');
    *colon = 0;
    int port = atoi(colon + 1);
    if (!strcmp(mode, "rr")) {
        int s = dial(argv[2], port);
        char c = 'x';
        for (int i = 0; i < n; i++) {
            double t = now_us();
            if (write(s, &c, 1) != 1 || read(s, &c, 1) != 1) { perror("rr"); return 1; }
            v[i] = now_us() - t;
        }
        report(v, n);
        return 0;
    }
    if (!strcmp(mode, "bulk")) {
        unsigned long long want = strtoull(argv[3], 0, 10), got = 0;
        int s = dial(argv[2], port);
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)(want >> (56 - 8 * i));
        double t = now_us();
        if (write(s, len, 8) != 8) { perror("bulk"); return 1; }
        static char buf[1 << 16];
        ssize_t r;
        while ((r = read(s, buf, sizeof buf)) > 0) got += r;
        double secs = (now_us() - t) / 1e6;
        printf("bytes %llu mib_per_s %.1f\n", got, got / secs / 1048576.0);
        return got == want ? 0 : 1;
    }
    return 2;
}
