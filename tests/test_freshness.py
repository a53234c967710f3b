"""httpdate.py, cache_control.py and freshness.py: HTTP-dates, Cache-Control, lifetimes and ages,
one group per RFC section.

RFC 9110 §5.6.7 (HTTP-date), RFC 9111 §5.2 (Cache-Control syntax), §5.2.1 (request directives),
§5.2.2 (response directives), §4.2.1 (explicit lifetime), §4.2.2 (heuristic lifetime), §4.2.3
(age), §5.1 (Age) and §4.2 (fresh or not). Every time here is a number given by the test.
"""

from __future__ import annotations

import calendar
import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coalesce_client.spec.cache_control import (
    DELTA_SECONDS_MAX,
    RequestDirectives,
    ResponseDirectives,
    parse_request_cache_control,
    parse_response_cache_control,
)
from coalesce_client.spec.dates import parse_http_date
from coalesce_client.spec.freshness import (
    HEURISTICALLY_CACHEABLE,
    current_age,
    freshness_lifetime,
    heuristic_lifetime,
    is_fresh,
)

NOV_6_1994 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's own example
NOW_2026 = float(calendar.timegm((2026, 6, 1, 12, 0, 0)))  # a fixed clock for two-digit years
ARABIC_INDIC_FIVE = "\u0665"
FULLWIDTH_FIVE = "\uff15"


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, second)))


# -- RFC 9110 §5.6.7: HTTP-date ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 form
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime(), a space before a one-digit day
        "Sun Nov 06 08:49:37 1994",  # asctime's date3 allows 2DIGIT as well
    ],
)
def test_the_three_forms_are_the_same_instant(value: str) -> None:
    assert parse_http_date(value, now=NOW_2026) == NOV_6_1994


@pytest.mark.parametrize(
    "value",
    [
        "sun, 06 nov 1994 08:49:37 gmt",
        "SUN, 06 NOV 1994 08:49:37 GMT",
        "Thu, 18 AUG 2050 02:01:18 gMT",
        "SUNDAY, 06-NOV-94 08:49:37 GMT",
        "sun nov  6 08:49:37 1994",
    ],
)
def test_a_cache_matches_dates_case_insensitively(value: str) -> None:
    # RFC 9111 §4.2: "a cache recipient SHOULD match the field value case-insensitively".
    assert parse_http_date(value, now=NOW_2026) is not None


def test_a_wrong_weekday_is_tolerated_and_the_date_decides() -> None:
    # 6 Nov 1994 was a Sunday; the date is unambiguous, the weekday carries nothing more.
    assert parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT", now=None) == NOV_6_1994
    assert parse_http_date("Friday, 06-Nov-94 08:49:37 GMT", now=NOW_2026) == NOV_6_1994
    assert parse_http_date("Wed Nov  6 08:49:37 1994", now=None) == NOV_6_1994


def test_surrounding_whitespace_is_not_part_of_the_value() -> None:
    assert parse_http_date(" \tSun, 06 Nov 1994 08:49:37 GMT \t", now=None) == NOV_6_1994


def test_a_leap_second_reads_as_the_second_before_it() -> None:
    # The grammar allows 23:59:60; RFC 9111 §4.2 rounds to "equal to or earlier".
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT", now=None) == ts(
        2016, 12, 31, 23, 59, 59
    )
    assert parse_http_date("Sat, 31 Dec 2016 12:00:60 GMT", now=None) is None


def test_february_29_exists_only_in_leap_years() -> None:
    assert parse_http_date("Thu, 29 Feb 1996 00:00:00 GMT", now=None) == ts(1996, 2, 29)
    assert parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT", now=None) == ts(2000, 2, 29)
    assert parse_http_date("Wed, 29 Feb 1995 00:00:00 GMT", now=None) is None
    # 2100: a century, not a leap year
    assert parse_http_date("Thu, 29 Feb 2100 00:00:00 GMT", now=None) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0",
        "-1",
        "garbage",
        "1994-11-06T08:49:37Z",
        "784111777",
        # IMF-fixdate near misses
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 EST",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 GMT GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sun,  06 Nov 1994 08:49:37 GMT",
        "Sun, 06  Nov  1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06-Nov-1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08.49.37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, +6 Nov 1994 08:49:37 GMT",
        f"Sun, 0{ARABIC_INDIC_FIVE} Nov 1994 08:49:37 GMT",
        f"Sun, 06 Nov 199{FULLWIDTH_FIVE} 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        # RFC 850 near misses
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 UTC",
        "Sunday, 06-Nov-94 08:49:37",
        "Sunday 06-Nov-94 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sunday, 6-Nov-94 08:49:37 GMT",
        "Sunday, 31-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-9x 08:49:37 GMT",
        "Someday, 06-Nov-94 08:49:37 GMT",
        # asctime near misses
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov   6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun, Nov  6 08:49:37 1994",
        "Sun Nov    08:49:37 1994",
        "Sunday Nov  6 08:49:37 1994",
    ],
)
def test_anything_but_the_three_forms_is_not_a_date(value: str) -> None:
    assert parse_http_date(value, now=NOW_2026) is None


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),  # 2094 is 68 years ahead
        ("Thursday, 01-Jan-70 00:00:00 GMT", 2070),  # 44 years ahead: not more than 50
        ("Wednesday, 01-Jan-25 00:00:00 GMT", 2025),
        ("Friday, 01-Jan-99 00:00:00 GMT", 1999),
        ("Saturday, 01-Jan-00 00:00:00 GMT", 2000),
        ("Saturday, 01-Feb-76 00:00:00 GMT", 2076),  # before 1 June 2076: within 50 years
        ("Friday, 06-Nov-76 00:00:00 GMT", 1976),  # after it: "more than 50 years in the future"
    ],
)
def test_a_two_digit_year_more_than_50_years_ahead_is_the_past_century(
    value: str, year: int
) -> None:
    at = parse_http_date(value, now=NOW_2026)
    assert at is not None
    assert time.gmtime(at).tm_year == year


def test_the_50_year_limit_compares_whole_timestamps() -> None:
    # Now is 2026-06-01 12:00:00; exactly 50 years on is not "more than 50 years in the future".
    assert parse_http_date("Monday, 01-Jun-76 12:00:00 GMT", now=NOW_2026) == ts(2076, 6, 1, 12)
    assert parse_http_date("Monday, 01-Jun-76 12:00:01 GMT", now=NOW_2026) == ts(
        1976, 6, 1, 12, 0, 1
    )


def test_a_february_29_must_exist_in_the_year_the_two_digits_name() -> None:
    # "00" is 2000 (a leap year) read in 2026, 2100 (not one) read in 2150, 1900 read in 1940.
    value = "Tuesday, 29-Feb-00 00:00:00 GMT"
    assert parse_http_date(value, now=NOW_2026) == ts(2000, 2, 29)
    assert parse_http_date(value, now=ts(2150, 1, 1)) is None
    assert parse_http_date(value, now=ts(1940, 1, 1)) is None


def test_without_a_reference_time_a_two_digit_year_is_not_a_date() -> None:
    # Nothing in spec/ reads a clock: with no ``now`` the century of "94" cannot be told, while
    # the two forms with four-digit years need no reference time.
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=None) is None
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=NOW_2026) == NOV_6_1994
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", now=None) == NOV_6_1994
    assert parse_http_date("Sun Nov  6 08:49:37 1994", now=None) == NOV_6_1994


# 1900-01-01 to 9999-12-31: every instant email.utils writes as IMF-fixdate.
instants = st.integers(min_value=-2_208_988_800, max_value=253_402_300_799)


@given(instants)
def test_imf_fixdate_round_trips(at: int) -> None:
    assert parse_http_date(email.utils.formatdate(at, usegmt=True), now=None) == at


@given(st.integers(min_value=int(ts(1000, 1, 1)), max_value=253_402_300_799))  # years 1000-9999
def test_asctime_round_trips(at: int) -> None:
    assert parse_http_date(time.asctime(time.gmtime(at)), now=None) == at


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@given(st.integers(min_value=int(ts(1976, 6, 1, 12)) + 1, max_value=int(ts(2076, 6, 1, 12))))
def test_rfc850_round_trips_within_50_years_of_now(at: int) -> None:
    # Two digits name exactly one instant in (now - 50 years, now + 50 years].
    t = time.gmtime(at)
    value = (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year % 100:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
    assert parse_http_date(value, now=NOW_2026) == at


# -- RFC 9111 §5.2: Cache-Control syntax -------------------------------------------------------


def test_directive_names_match_in_any_case() -> None:
    cc = parse_response_cache_control("MAX-AGE=60, No-Store, S-MaxAge=5")
    assert (cc.max_age, cc.no_store, cc.s_maxage) == (60, True, 5)


def test_arguments_may_be_quoted() -> None:
    # §5.2: recipients "ought to accept both forms, even if a specific form is required".
    cc = parse_response_cache_control('max-age="60", s-maxage="5", stale-if-error="30"')
    assert (cc.max_age, cc.s_maxage, cc.stale_if_error) == (60, 5, 30)
    assert parse_request_cache_control('max-age="7"').max_age == 7


@pytest.mark.parametrize(
    "value",
    [
        'extension="max-age=3600", max-age=1',
        'max-age=1, extension="max-age=3600"',
        'ext="a, max-age=3600", max-age=1',
        'ext="a\\", max-age=3600", max-age=1',  # an escaped quote does not close the string
    ],
)
def test_a_directive_inside_a_quoted_string_is_not_one(value: str) -> None:
    assert parse_response_cache_control(value).max_age == 1


def test_several_field_lines_combine() -> None:
    cc = parse_response_cache_control(["max-age=60", "no-cache", "must-revalidate, public"])
    assert (cc.max_age, cc.no_cache, cc.must_revalidate, cc.public) == (60, True, True, True)


def test_an_unterminated_quote_does_not_swallow_the_next_line() -> None:
    assert parse_response_cache_control(['ext="oops, no-store', "max-age=5"]).max_age == 5
    cc = parse_response_cache_control('max-age=5, ext="oops, no-store')
    assert (cc.max_age, cc.no_store) == (5, False)  # the rest of that line is inside the quote


def test_empty_list_elements_are_ignored() -> None:
    assert parse_response_cache_control(" , ,max-age=5,, ,").max_age == 5


def test_no_value_means_no_directives() -> None:
    assert parse_response_cache_control(None) == ResponseDirectives()
    assert parse_response_cache_control("") == ResponseDirectives()
    assert parse_response_cache_control([]) == ResponseDirectives()
    assert parse_request_cache_control(None) == RequestDirectives()


def test_unknown_directives_are_ignored() -> None:
    # §5.2.3: "A cache MUST ignore unrecognized cache directives."
    cc = parse_response_cache_control('community="UCI", private, foo, bar=1, "quoted", =5')
    assert cc == ResponseDirectives(private=True)


def test_leading_zeros_are_still_delta_seconds() -> None:
    assert parse_response_cache_control("max-age=003600").max_age == 3600
    assert parse_response_cache_control("max-age=000").max_age == 0


@pytest.mark.parametrize(
    "argument",
    [
        "+5",
        "-5",
        "5.0",
        "5.5",
        "",
        '""',
        "'3600'",  # single quotes are token characters, not quotes
        "a3600",
        "3600a",
        "0x10",
        "1e3",
        ARABIC_INDIC_FIVE,
        FULLWIDTH_FIVE,
        ' "5"',
        " 5",
        '"5',
        '"5"x',
        '"+5"',
    ],
)
def test_an_invalid_max_age_or_s_maxage_is_stale(argument: str) -> None:
    # RFC 9111 §4.2.1: invalid freshness information is stale: 0, not "absent".
    assert parse_response_cache_control(f"max-age={argument}").max_age == 0
    assert parse_response_cache_control(f"s-maxage={argument}").s_maxage == 0


def test_a_space_before_the_equals_sign_makes_max_age_invalid() -> None:
    assert parse_response_cache_control("max-age =3600").max_age == 0
    assert parse_response_cache_control("max-age").max_age == 0  # no argument at all


def test_a_max_age_sent_twice_with_different_values_is_stale() -> None:
    # §4.2.1: "either the first occurrence should be used, or the response should be considered
    # stale"; we take the second, on one line or on two.
    assert parse_response_cache_control("max-age=1800, max-age=1").max_age == 0
    assert parse_response_cache_control(["max-age=1", "max-age=1800"]).max_age == 0
    assert parse_response_cache_control("s-maxage=1, s-maxage=2").s_maxage == 0
    assert parse_response_cache_control("max-age=60, max-age=+60").max_age == 0


def test_a_max_age_repeated_even_with_the_same_value_is_stale() -> None:
    assert parse_response_cache_control(["max-age=60", "max-age=60"]).max_age == 0
    assert parse_response_cache_control('max-age=60, max-age="060"').max_age == 0
    assert parse_response_cache_control("s-maxage=10, s-maxage=10").s_maxage == 0


def test_a_huge_delta_seconds_is_capped_at_2_to_the_31() -> None:
    # §1.2.2: "the cache MUST consider the value to be 2147483648 (2^31)".
    assert DELTA_SECONDS_MAX == 2147483648
    assert parse_response_cache_control("max-age=2147483647").max_age == 2147483647
    assert parse_response_cache_control("max-age=2147483649").max_age == DELTA_SECONDS_MAX
    assert parse_response_cache_control("max-age=99999999999").max_age == DELTA_SECONDS_MAX
    # Longer than int() reads from a string (4,300 digits): capped, not a ValueError.
    assert parse_response_cache_control("max-age=" + "9" * 5000).max_age == DELTA_SECONDS_MAX
    assert parse_response_cache_control("max-age=" + "0" * 5000 + "7").max_age == 7


# -- RFC 9111 §5.2.2: response directives -------------------------------------------------------


def test_every_response_directive_is_read() -> None:
    cc = parse_response_cache_control(
        "max-age=1, s-maxage=2, no-cache, no-store, private, public, must-revalidate, "
        "proxy-revalidate, must-understand, no-transform, immutable, "
        "stale-while-revalidate=3, stale-if-error=4"
    )
    assert cc == ResponseDirectives(
        max_age=1,
        s_maxage=2,
        no_cache=True,
        no_store=True,
        private=True,
        public=True,
        must_revalidate=True,
        proxy_revalidate=True,
        must_understand=True,
        no_transform=True,
        immutable=True,
        stale_while_revalidate=3,
        stale_if_error=4,
    )


@pytest.mark.parametrize("name", ["no-cache", "private"])
def test_no_cache_and_private_with_field_names(name: str) -> None:
    attr = name.replace("-", "_")
    cc = parse_response_cache_control(f'{name}="Set-Cookie, X-Foo"')
    assert getattr(cc, attr) is True
    assert getattr(cc, f"{attr}_fields") == {"set-cookie", "x-foo"}
    # The token form: senders SHOULD NOT generate it, recipients accept it.
    assert getattr(parse_response_cache_control(f"{name}=set-cookie"), f"{attr}_fields") == {
        "set-cookie"
    }
    # Two qualified forms list both; the unqualified form applies to every field and wins.
    both = parse_response_cache_control([f'{name}="a"', f'{name}="B"'])
    assert getattr(both, f"{attr}_fields") == {"a", "b"}
    wins = parse_response_cache_control(f'{name}="a", {name}')
    assert (getattr(wins, attr), getattr(wins, f"{attr}_fields")) == (True, frozenset())
    # An empty or unreadable list reads as unqualified: the restrictive side.
    for bad in (f'{name}=""', f'{name}="a', f"{name}= a"):
        cc = parse_response_cache_control(bad)
        assert (getattr(cc, attr), getattr(cc, f"{attr}_fields")) == (True, frozenset()), bad


def test_no_cache_without_field_names_has_none() -> None:
    cc = parse_response_cache_control("no-cache")
    assert (cc.no_cache, cc.no_cache_fields) == (True, frozenset())


def test_a_restricting_directive_counts_even_with_an_argument() -> None:
    cc = parse_response_cache_control('no-store="x", must-revalidate=1, proxy-revalidate=x')
    assert (cc.no_store, cc.must_revalidate, cc.proxy_revalidate) == (True, True, True)
    assert parse_response_cache_control("no-transform=1").no_transform


def test_a_relaxing_directive_with_an_argument_does_not_count() -> None:
    # §5.2: "no argument is defined (nor allowed)": public=1 is not public.
    cc = parse_response_cache_control('public=1, immutable="yes", must-understand=x')
    assert (cc.public, cc.immutable, cc.must_understand) == (False, False, False)
    assert not parse_response_cache_control("public, public=1").public


def test_stale_windows_are_delta_seconds_and_unreadable_ones_grant_nothing() -> None:
    cc = parse_response_cache_control("stale-while-revalidate=30, stale-if-error=600")
    assert (cc.stale_while_revalidate, cc.stale_if_error) == (30, 600)
    for bad in ("+30", "3.5", "", "x"):
        cc = parse_response_cache_control(
            f"stale-while-revalidate={bad}, stale-if-error={bad}, max-age=5"
        )
        assert (cc.stale_while_revalidate, cc.stale_if_error, cc.max_age) == (None, None, 5)
    cc = parse_response_cache_control("stale-if-error=1, stale-if-error=2")
    assert cc.stale_if_error is None


# -- RFC 9111 §5.2.1: request directives --------------------------------------------------------


def test_every_request_directive_is_read() -> None:
    rd = parse_request_cache_control(
        "max-age=1, max-stale=2, min-fresh=3, no-cache, no-store, only-if-cached, no-transform"
    )
    assert rd == RequestDirectives(
        max_age=1,
        max_stale=2,
        min_fresh=3,
        no_cache=True,
        no_store=True,
        only_if_cached=True,
        no_transform=True,
    )


def test_max_stale_without_a_value_accepts_any_staleness() -> None:
    # §5.2.1.2: "If no value is assigned to max-stale, then the client will accept a stale
    # response of any age."
    assert parse_request_cache_control("max-stale").max_stale == DELTA_SECONDS_MAX
    assert parse_request_cache_control("max-stale, max-stale").max_stale == DELTA_SECONDS_MAX
    assert parse_request_cache_control("max-stale=10").max_stale == 10
    assert parse_request_cache_control("no-cache").max_stale is None


def test_unreadable_request_directives_take_their_most_restrictive_meaning() -> None:
    for bad in ("+5", "5.5", "", "x", f"{ARABIC_INDIC_FIVE}"):
        rd = parse_request_cache_control(f"max-age={bad}, max-stale={bad}, min-fresh={bad}")
        assert (rd.max_age, rd.max_stale, rd.min_fresh) == (0, None, DELTA_SECONDS_MAX), bad
    rd = parse_request_cache_control("max-age=5, max-age=10, max-stale, max-stale=5")
    assert (rd.max_age, rd.max_stale) == (0, None)
    assert parse_request_cache_control("min-fresh=1, min-fresh=2").min_fresh == DELTA_SECONDS_MAX


def test_request_directives_are_not_response_directives() -> None:
    rd = parse_request_cache_control("s-maxage=5, private, public, only-if-cached")
    assert rd == RequestDirectives(only_if_cached=True)
    cc = parse_response_cache_control("min-fresh=5, max-stale, only-if-cached")
    assert cc == ResponseDirectives()


# -- RFC 9111 §4.2.1: the explicit freshness lifetime ----------------------------------------------

DATE = NOV_6_1994
IN_AN_HOUR = "Sun, 06 Nov 1994 09:49:37 GMT"
AN_HOUR_AGO = "Sun, 06 Nov 1994 07:49:37 GMT"


def lifetime(
    cache_control: str | None = None,
    *,
    expires: str | None = None,
    date: float | None = DATE,
    response_time: float = DATE,
    shared: bool = False,
) -> float | None:
    return freshness_lifetime(
        parse_response_cache_control(cache_control),
        expires=expires,
        date=date,
        response_time=response_time,
        shared=shared,
    )


def test_s_maxage_wins_in_a_shared_cache_only() -> None:
    cc = "max-age=60, s-maxage=600"
    assert lifetime(cc, expires=IN_AN_HOUR, shared=True) == 600.0
    assert lifetime(cc, expires=IN_AN_HOUR) == 60.0
    assert lifetime("s-maxage=600", expires=IN_AN_HOUR) == 3600.0  # a private cache: Expires


def test_max_age_wins_over_expires() -> None:
    # §5.3: "If a response includes a Cache-Control header field with the max-age directive
    # ..., a recipient MUST ignore the Expires header field."
    assert lifetime("max-age=60", expires=IN_AN_HOUR) == 60.0
    assert lifetime("max-age=0", expires=IN_AN_HOUR) == 0.0
    assert lifetime("max-age=60", expires="0") == 60.0


def test_expires_minus_date() -> None:
    assert lifetime(expires=IN_AN_HOUR) == 3600.0
    # The obsolete forms count as well.
    assert lifetime(expires="Sunday, 06-Nov-94 09:49:37 GMT") == 3600.0
    assert lifetime(expires="Sun Nov  6 09:49:37 1994") == 3600.0


def test_expires_without_date_counts_from_the_response_time() -> None:
    # RFC 9110 §6.6.1: without a Date, the recipient records the time the response arrived.
    assert lifetime(expires=IN_AN_HOUR, date=None, response_time=DATE + 600) == 3000.0


def test_expires_in_the_past_is_stale() -> None:
    assert lifetime(expires=AN_HOUR_AGO) == 0.0
    assert lifetime(expires=IN_AN_HOUR, date=DATE + 7200) == 0.0  # Expires before Date


@pytest.mark.parametrize(
    "expires",
    [
        "0",
        "-1",
        "",
        "garbage",
        "Sun, 06 Nov 1994 09:49:37 UTC",
        "Sun, 06 Nov 1994 09:49:37",
        "Sun, 06 Nov 94 09:49:37 GMT",
        f"{IN_AN_HOUR}, {IN_AN_HOUR}",  # two Expires lines, joined as RFC 9110 §5.3 says
    ],
)
def test_an_invalid_expires_is_already_stale(expires: str) -> None:
    # §5.3: "A cache recipient MUST interpret invalid date formats, especially the value "0",
    # as representing a time in the past (i.e., "already expired")."
    assert lifetime(expires=expires) == 0.0


def test_an_invalid_max_age_is_stale_even_with_a_good_expires() -> None:
    assert lifetime("max-age=1.5", expires=IN_AN_HOUR) == 0.0
    assert lifetime("max-age=60, max-age=120", expires=IN_AN_HOUR) == 0.0


def test_no_explicit_lifetime_is_none() -> None:
    assert lifetime() is None
    assert lifetime("public, must-revalidate") is None
    assert lifetime("s-maxage=60") is None  # private cache, no Expires


def test_a_far_expires_is_capped_at_2_to_the_31() -> None:
    assert lifetime(expires="Fri, 31 Dec 9999 23:59:59 GMT") == float(DELTA_SECONDS_MAX)


# -- RFC 9111 §4.2.2: heuristic freshness ----------------------------------------------------------


def test_heuristic_is_a_tenth_of_date_minus_last_modified() -> None:
    assert heuristic_lifetime(200, date=DATE, last_modified=DATE - 1000, heuristic_max=86400) == (
        100.0
    )


def test_heuristic_is_capped_by_heuristic_max() -> None:
    a_year = 365 * 86400.0
    assert heuristic_lifetime(200, date=DATE, last_modified=DATE - a_year, heuristic_max=86400) == (
        86400.0
    )
    assert heuristic_lifetime(200, date=DATE, last_modified=DATE - a_year, heuristic_max=0) == 0.0


def test_heuristic_is_0_when_last_modified_is_after_date() -> None:
    assert heuristic_lifetime(200, date=DATE, last_modified=DATE + 50, heuristic_max=86400) == 0.0


def test_heuristic_needs_both_dates() -> None:
    assert heuristic_lifetime(200, date=None, last_modified=DATE, heuristic_max=86400) is None
    assert heuristic_lifetime(200, date=DATE, last_modified=None, heuristic_max=86400) is None


def test_heuristic_statuses_are_rfc_9110s() -> None:
    assert frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}) == (
        HEURISTICALLY_CACHEABLE
    )
    for status in range(100, 600):
        got = heuristic_lifetime(status, date=DATE, last_modified=DATE - 10, heuristic_max=60)
        assert (got is not None) == (status in HEURISTICALLY_CACHEABLE), status


def test_public_makes_any_status_heuristically_cacheable() -> None:
    # §4.2.2: also "responses ... marked as explicitly cacheable (e.g., with a "public" ...)".
    last = DATE - 1000
    assert heuristic_lifetime(302, date=DATE, last_modified=last, heuristic_max=60) is None
    assert heuristic_lifetime(
        302, date=DATE, last_modified=last, heuristic_max=60, public=True
    ) == (60.0)


# -- RFC 9111 §4.2.3: current age --------------------------------------------------------------


def test_age_when_the_age_header_says_more_than_the_clocks() -> None:
    # request sent at 1000, response at 1002 (response_delay 2), Date 995 (apparent_age 7),
    # Age 10: corrected_age_value 12 wins; 8 s resident: 20.
    assert current_age("10", 995.0, request_time=1000.0, response_time=1002.0, now=1010.0) == 20.0


def test_age_when_the_clocks_say_more_than_the_age_header() -> None:
    # Date 980: apparent_age 22 beats corrected_age_value 12; 8 s resident: 30.
    assert current_age("10", 980.0, request_time=1000.0, response_time=1002.0, now=1010.0) == 30.0


def test_age_counts_the_response_delay_even_without_an_age_header() -> None:
    # corrected_age_value = 0 + response_delay: "relative to the time the request was initiated".
    assert current_age(None, 1002.0, request_time=1000.0, response_time=1002.0, now=1002.0) == 2.0


def test_a_date_in_the_future_does_not_make_the_age_negative() -> None:
    # apparent_age = max(0, response_time - date_value)
    assert current_age(None, 5000.0, request_time=1000.0, response_time=1000.0, now=1000.0) == 0.0


def test_without_a_date_the_apparent_age_is_0() -> None:
    # RFC 9110 §6.6.1: the time the response arrived stands for a missing or invalid Date.
    assert current_age(None, None, request_time=1000.0, response_time=1000.0, now=1060.0) == 60.0
    assert current_age("30", None, request_time=1000.0, response_time=1000.0, now=1060.0) == 90.0


def test_resident_time_grows_with_now() -> None:
    ages = [
        current_age("5", 1000.0, request_time=1000.0, response_time=1000.0, now=1000.0 + t)
        for t in (0, 1, 60)
    ]
    assert ages == [5.0, 6.0, 65.0]


# -- RFC 9111 §5.1: Age -----------------------------------------------------------------------


def age_of(header: str | None) -> float:
    return current_age(header, 1000.0, request_time=1000.0, response_time=1000.0, now=1000.0)


@pytest.mark.parametrize(
    ("header", "age"),
    [
        ("7200", 7200.0),
        ("007200", 7200.0),
        (" 7200 ", 7200.0),
        # "SHOULD use the first member of the field value, discarding subsequent ones"
        ("7200,0", 7200.0),
        ("0, 7200", 0.0),
        ("7200, 7200", 7200.0),
        # "If the field value ... is invalid ... a cache SHOULD ignore the field."
        ("abc", 0.0),
        ("-7200", 0.0),
        ("7200.0", 0.0),
        ("+7200", 0.0),
        ("", 0.0),
        (ARABIC_INDIC_FIVE, 0.0),
        ("99999999999", float(DELTA_SECONDS_MAX)),  # §1.2.2: capped, never an overflow
        ("9" * 5000, float(DELTA_SECONDS_MAX)),
    ],
)
def test_the_age_header(header: str, age: float) -> None:
    assert age_of(header) == age


def test_an_ignored_age_leaves_the_age_to_the_date() -> None:
    assert current_age("abc", 940.0, request_time=1000.0, response_time=1000.0, now=1000.0) == 60.0


# -- RFC 9111 §4.2: fresh or stale -------------------------------------------------------------


def test_fresh_while_the_lifetime_is_greater_than_the_age() -> None:
    assert is_fresh(60.0, 0.0)
    assert is_fresh(60.0, 59.999)
    assert not is_fresh(60.0, 60.0)  # response_is_fresh = (freshness_lifetime > current_age)
    assert not is_fresh(60.0, 61.0)
    assert not is_fresh(0.0, 0.0)
    assert not is_fresh(None, 0.0)


def test_an_age_larger_than_max_age_arrives_stale() -> None:
    cc = parse_response_cache_control("max-age=60")
    life = freshness_lifetime(cc, expires=None, date=DATE, response_time=DATE)
    assert not is_fresh(
        life, current_age("120", DATE, request_time=DATE, response_time=DATE, now=DATE)
    )
    assert not is_fresh(
        life, current_age("60", DATE, request_time=DATE, response_time=DATE, now=DATE)
    )
    assert is_fresh(life, current_age("59", DATE, request_time=DATE, response_time=DATE, now=DATE))


def test_a_response_with_a_lifetime_goes_stale_as_it_sits() -> None:
    life = lifetime(expires=IN_AN_HOUR)
    ages = {
        t: current_age(None, DATE, request_time=DATE, response_time=DATE, now=DATE + t)
        for t in (0, 3599, 3600)
    }
    assert [is_fresh(life, a) for a in ages.values()] == [True, True, False]


# -- values read once (issue 20: a miss reads its origin's usual Date and Cache-Control) ----------


def test_a_fixed_length_date_read_again_is_the_same_and_the_memo_stays_bounded() -> None:
    from coalesce_client.spec import dates

    value = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(value, now=None) == parse_http_date(value, now=None) == 784111777.0
    assert parse_http_date(f" {value}\t", now=None) == 784111777.0  # padded: read, not kept
    assert f" {value}\t" not in dates._READ
    assert parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT", now=None) is None  # kept as None
    assert parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT", now=None) is None
    for at in range(784111777, 784111777 + 3 * dates._READ.limit):
        assert parse_http_date(email.utils.formatdate(at, usegmt=True), now=None) == at
    assert 0 < len(dates._READ) <= dates._READ.limit


def test_an_rfc850_date_is_read_against_each_calls_own_now() -> None:
    value = "Sunday, 06-Nov-94 08:49:37 GMT"
    assert parse_http_date(value, now=1_700_000_000) == 784111777.0  # 1994
    in_2090 = calendar.timegm((2090, 1, 1, 0, 0, 0))
    assert parse_http_date(value, now=in_2090) == calendar.timegm((2094, 11, 6, 8, 49, 37))
    assert parse_http_date(value, now=None) is None


def test_a_one_line_cache_control_is_parsed_once_and_the_memo_stays_bounded() -> None:
    from coalesce_client.spec import cache_control

    first = parse_response_cache_control("max-age=60, must-revalidate")
    assert first is parse_response_cache_control("max-age=60, must-revalidate")
    assert (first.max_age, first.must_revalidate) == (60, True)
    lines = ["max-age=60", "must-revalidate"]
    assert parse_response_cache_control(lines) == first  # several lines: parsed each time
    assert parse_response_cache_control(lines) is not first
    long = "max-age=5, " + "x" * 300
    assert parse_response_cache_control(long).max_age == 5
    assert long not in cache_control._RESPONSE_READ  # too long to keep
    for n in range(3 * cache_control._RESPONSE_READ.limit):
        assert parse_response_cache_control(f"max-age={n}").max_age == n
    assert 0 < len(cache_control._RESPONSE_READ) <= cache_control._RESPONSE_READ.limit
