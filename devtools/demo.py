"""A demo catalogue: job ads scattered around real cities, with titles and companies."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CITIES = {  # name: (lat, lon, share of ads)
    "berlin": (52.5200, 13.4050, 3), "paris": (48.8566, 2.3522, 3),
    "london": (51.5074, -0.1278, 3), "madrid": (40.4168, -3.7038, 2),
    "amsterdam": (52.3676, 4.9041, 2), "new_york": (40.7128, -74.0060, 3),
    "sao_paulo": (-23.5505, -46.6333, 2), "nairobi": (-1.2921, 36.8219, 1),
    "tokyo": (35.6762, 139.6503, 3), "sydney": (-33.8688, 151.2093, 1),
}
ROLES = {
    "engineering": ["Backend Engineer", "Frontend Developer", "Data Engineer", "SRE",
                    "Mobile Developer", "QA Engineer"],
    "hospitality": ["Barista", "Line Cook", "Waiter", "Hotel Receptionist", "Sous Chef"],
    "logistics": ["Warehouse Associate", "Delivery Driver", "Forklift Operator", "Dispatcher"],
    "retail": ["Store Assistant", "Cashier", "Visual Merchandiser", "Store Manager"],
    "care": ["Nurse", "Care Assistant", "Pharmacy Technician", "Physiotherapist"],
    "office": ["Accountant", "Office Manager", "Recruiter", "Customer Support Agent"],
}
SENIORITY = ["", "Junior ", "Senior ", "Lead "]
COMPANY_A = ["North", "Blue", "Green", "Bright", "Urban", "Swift", "Golden", "Silver", "Open"]
COMPANY_B = ["Harbor", "Leaf", "Works", "Labs", "Logistics", "Kitchen", "Health", "Retail"]
COMPANY_C = ["GmbH", "Ltd", "Inc", "SA", "& Co", "Group"]


def demo_ads(count: int, now: float, seed: int = 7, spread_km: float = 6.0) -> Iterator[dict]:
    """``count`` ads as import lines (dicts), reproducible for a seed. Ads sit around each
    city with a normal spread of ``spread_km``; a tenth expire within a week. Ids carry the
    seed, so catalogues of two seeds can be imported side by side.

    >>> [ad["ad_id"] for ad in demo_ads(2, 0.0, seed=3)]
    ['berlin-3-000000', 'paris-3-000001']
    """
    rng = np.random.default_rng(seed)
    names = list(CITIES)
    weights = np.array([CITIES[n][2] for n in names], dtype=float)
    city = rng.choice(len(names), size=count, p=weights / weights.sum())
    north_km = rng.normal(0.0, spread_km, count)
    east_km = rng.normal(0.0, spread_km, count)
    categories = list(ROLES)
    for i in range(count):
        name = names[city[i]]
        lat0, lon0, _ = CITIES[name]
        lat = float(np.clip(lat0 + north_km[i] / 111.2, -89.9, 89.9))
        lon = float(lon0 + east_km[i] / (111.2 * np.cos(np.radians(lat0))))
        category = categories[rng.integers(len(categories))]
        roles = ROLES[category]
        line = {
            "ad_id": f"{name}-{seed}-{i:06d}", "lat": round(lat, 6), "lon": round(lon, 6),
            "title": SENIORITY[rng.integers(len(SENIORITY))] + roles[rng.integers(len(roles))],
            "company": " ".join([COMPANY_A[rng.integers(len(COMPANY_A))],
                                 COMPANY_B[rng.integers(len(COMPANY_B))],
                                 COMPANY_C[rng.integers(len(COMPANY_C))]]),
            "category": category,
            "created_at": round(now - float(rng.uniform(0, 30 * 86_400)), 3),
        }
        if rng.random() < 0.1:
            line["expires_at"] = round(now + float(rng.uniform(3600, 7 * 86_400)), 3)
        yield line
