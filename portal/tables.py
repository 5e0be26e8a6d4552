"""The one table component of every list page: columns, sorting, the user's column and
density preferences, keyset paging and the empty state. `templates/_table.html` renders it.

A page declares its table once (`TableSpec`, registered by id so the preference endpoint
knows its columns), then builds a `Table` per request from the rows it selected.
"""
import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F, Q, QuerySet

from portal.errors import BadInput

DENSITIES = ("comfortable", "compact")
MAX_COLUMNS = 12  # table.css has hide rules for columns 1..12


@dataclass(frozen=True)
class Column:
    """One column: its key (used in preferences), header text, and how it sorts."""

    key: str
    label: str
    sort: str = ""          # the sort value that orders by this column ascending
    hideable: bool = True   # the first column (the object's name) cannot be hidden
    numeric: bool = False   # right-aligned


@dataclass(frozen=True)
class TableSpec:
    """A table's identity and columns; registered so preferences can be checked."""

    id: str
    columns: tuple[Column, ...]
    caption: str = ""
    default_hidden: tuple[str, ...] = ()   # hidden until the user chooses otherwise

    def column_keys(self) -> list[str]:
        return [column.key for column in self.columns]


_SPECS: dict[str, TableSpec] = {}


def table_register(spec: TableSpec) -> TableSpec:
    """Declare a table (module level, next to the view that shows it)."""
    if len(spec.columns) > MAX_COLUMNS:
        raise ValueError(f"{spec.id}: at most {MAX_COLUMNS} columns")
    _SPECS[spec.id] = spec
    return spec


def table_spec(table_id: str) -> TableSpec | None:
    return _SPECS.get(table_id)


@dataclass(frozen=True)
class Empty:
    """What an empty table says, and the next step when the user's role may take it."""

    text: str
    action_label: str = ""
    action_url: str = ""


@dataclass
class Table:
    """One rendering of a table: the rows of this page and everything around them."""

    spec: TableSpec
    rows: list
    row_template: str
    request: object
    sort: str = ""
    count: int | None = None
    next_cursor: str = ""
    is_first_page: bool = True
    empty: Empty = field(default_factory=lambda: Empty("Nothing here yet."))
    filtered: bool = False   # rows are narrowed by a filter (the empty state says so)
    label: str = ""          # accessible name of the table
    noun: tuple[str, str] = ("row", "rows")
    limit: int = 50
    cursor_param: str = "after"   # the query parameter that carries next_cursor
    hidden: list[str] = field(init=False)
    density: str = field(init=False)

    def __post_init__(self):
        self.hidden, self.density = preference_for(self.request.user, self.spec)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def count_text(self) -> str:
        if self.count is None:
            return ""
        return f"{self.count} {self.noun[0] if self.count == 1 else self.noun[1]}"

    def _query(self, **changes) -> str:
        query = self.request.GET.copy()
        for name in ("after", "page", self.cursor_param):
            query.pop(name, None)
        for name, value in changes.items():
            query.pop(name, None)
            if value:
                query[name] = value
        return query.urlencode()

    @property
    def columns(self) -> list[dict]:
        """Header cells: the column, its position, whether hidden, its sort link."""
        cells = []
        for index, column in enumerate(self.spec.columns, start=1):
            cell = {"column": column, "index": index, "hidden": column.key in self.hidden,
                    "aria_sort": "", "sort_url": ""}
            if column.sort:
                ascending = self.sort == column.sort
                descending = self.sort == "-" + column.sort
                cell["aria_sort"] = ("ascending" if ascending else
                                     "descending" if descending else "")
                cell["sort_url"] = "?" + self._query(sort="-" + column.sort if ascending
                                                     else column.sort)
            cells.append(cell)
        return cells

    @property
    def hide_attr(self) -> str:
        """Positions of hidden columns ("c3 c7"): table.css hides them without script."""
        keys = self.spec.column_keys()
        return " ".join(f"c{keys.index(key) + 1}" for key in self.hidden if key in keys)

    @property
    def next_url(self) -> str:
        return "?" + self._query(**{self.cursor_param: self.next_cursor}) \
            if self.next_cursor else ""

    @property
    def first_url(self) -> str:
        return "" if self.is_first_page else "?" + self._query()


def preference_for(user, spec: TableSpec) -> tuple[list[str], str]:
    """The user's hidden columns and density for this table (defaults: the spec's, and
    comfortable)."""
    from portal.accounts.models import TablePreference

    if not getattr(user, "is_authenticated", False):
        return list(spec.default_hidden), "comfortable"
    pref = TablePreference.objects.filter(user=user, table=spec.id).first()
    if pref is None:
        return list(spec.default_hidden), "comfortable"
    keys = set(spec.column_keys())
    return [key for key in pref.hidden_columns if key in keys], pref.density


# Keyset paging --------------------------------------------------------------------------

def cursor_encode(values: list) -> str:
    """An opaque cursor for the row after which the next page starts."""
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def cursor_decode(cursor: str, *, size: int) -> list:
    """The values of a cursor; a cursor that was not ours is a 400 sentence."""
    bad = BadInput("This page link is not valid any more: start again from the first page.",
                   fields={"after": ["Not a page cursor."]})
    if len(cursor) > 1000:
        raise bad
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(values, list) or len(values) != size or not all(
            value is None or isinstance(value, str | int) for value in values):
        raise bad
    return values


def keyset_page(qs: QuerySet, *, order: tuple[str, ...], after: str = "", limit: int = 50,
                datetimes: tuple[str, ...] = ()) -> tuple[list, str]:
    """One page of rows ordered by `order` (e.g. ("-expires", "name")), and the next cursor.

    The last field must be unique (a tie-breaker). The first may be nullable: NULLs sort
    last in both directions. No OFFSET: page 100 costs what page 1 does.
    """
    fields = [name.lstrip("-") for name in order]
    qs = qs.order_by(*[F(name[1:]).desc(nulls_last=True) if name.startswith("-")
                       else F(name).asc(nulls_last=True) for name in order])
    if after:
        values = cursor_decode(after, size=len(order))
        for index, name in enumerate(fields):
            if name in datetimes and values[index] is not None:
                try:
                    values[index] = datetime.fromisoformat(values[index])
                except (TypeError, ValueError):
                    raise BadInput("This page link is not valid any more: start again from "
                                   "the first page.", fields={"after": ["Not a page cursor."]}
                                   ) from None
        qs = qs.filter(_after(order, values))
    rows = list(qs[: limit + 1])
    if len(rows) <= limit:
        return rows, ""
    last = rows[limit - 1]
    return rows[:limit], cursor_encode([getattr(last, name) for name in fields])


def _after(order: tuple[str, ...], values: list) -> Q:
    """Rows strictly after `values` in `order` (NULLs last), as one condition."""
    condition = Q(pk__in=[])  # false
    for index, name in enumerate(order):
        field_name = name.lstrip("-")
        value = values[index]
        equal = Q()
        for prev_name, prev_value in zip(order[:index], values[:index], strict=True):
            prev = prev_name.lstrip("-")
            equal &= Q(**{f"{prev}__isnull": True}) if prev_value is None else \
                Q(**{prev: prev_value})
        if value is None:
            step = Q(pk__in=[])  # nothing sorts after NULL in this field but other NULLs
        else:
            lookup = "lt" if name.startswith("-") else "gt"
            step = Q(**{f"{field_name}__{lookup}": value}) | Q(**{f"{field_name}__isnull": True})
        condition |= equal & step
    return condition
