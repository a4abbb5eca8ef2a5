/* Exercises provisioning.h from C: record verification with the right chip,
 * another chip, an erased partition and a bad authority list; raw ECDSA
 * verification; image verification. Prints one result per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provisioning.h"

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s RECORD AUTHORITY_SEC1 IMAGE RELEASE_SEC1\n", argv[0]);
        return 2;
    }
    size_t rec_len, auth_len, img_len, rel_len;
    uint8_t *rec = slurp(argv[1], &rec_len);
    uint8_t *auth = slurp(argv[2], &auth_len);
    uint8_t *img = slurp(argv[3], &img_len);
    uint8_t *rel = slurp(argv[4], &rel_len);
    const uint8_t chip[8] = {0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x03};
    const uint8_t other[8] = {0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x04};

    struct prov_record_info info;
    memset(&info, 0, sizeof info);
    int rc = prov_record_verify(rec, rec_len, chip, auth, 1, &info);
    printf("record=%d serial=%u product=%s\n", rc, info.serial, info.product);
    printf("other_chip=%d\n", prov_record_verify(rec, rec_len, other, auth, 1, NULL));
    uint8_t erased[4096];
    memset(erased, 0xff, sizeof erased);
    printf("erased=%d\n", prov_record_verify(erased, sizeof erased, chip, auth, 1, NULL));
    rec[150] ^= 1;
    printf("tampered=%d\n", prov_record_verify(rec, rec_len, chip, auth, 1, NULL));
    rec[150] ^= 1;
    printf("null=%d\n", prov_record_verify(NULL, 0, chip, auth, 1, NULL));
    printf("too_many_keys=%d\n", prov_record_verify(rec, rec_len, chip, auth, PROV_MAX_KEYS + 1, NULL));

    struct prov_image_info ii;
    memset(&ii, 0, sizeof ii);
    rc = prov_image_verify(img, img_len, rel, 1, 0, &ii);
    printf("image=%d version=%u.%u.%u+%u counter=%u\n", rc, ii.version_major, ii.version_minor,
           ii.version_revision, ii.version_build, ii.security_counter);
    printf("image_rollback=%d\n", prov_image_verify(img, img_len, rel, 1, 0xffffffffu, NULL));
    printf("image_wrong_key=%d\n", prov_image_verify(img, img_len, auth, 1, 0, NULL));
    img[600] ^= 1;
    printf("image_tampered=%d\n", prov_image_verify(img, img_len, rel, 1, 0, NULL));

    uint8_t digest[32], sig[64];
    memset(digest, 0x42, sizeof digest);
    memset(sig, 0x01, sizeof sig);
    printf("p256_bogus=%d\n", prov_p256_verify_digest(auth, digest, sig));

    uint8_t scalar[32], nonce[32], answer[64];
    const uint8_t hw[8] = {0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x03};
    memset(scalar, 0x11, sizeof scalar);
    memset(nonce, 0x22, sizeof nonce);
    rc = prov_auth_sign(scalar, nonce, hw, 7, answer);
    printf("auth_sign=%d sig=", rc);
    for (size_t i = 0; i < sizeof answer; i++) printf("%02x", answer[i]);
    printf("\n");
    memset(scalar, 0, sizeof scalar);
    printf("auth_sign_zero_key=%d\n", prov_auth_sign(scalar, nonce, hw, 7, answer));
    printf("auth_sign_null=%d\n", prov_auth_sign(NULL, nonce, hw, 7, answer));
    free(rec); free(auth); free(img); free(rel);
    return 0;
}
